/**
 * Which offset a consumer may commit for one partition. Offsets are committed only for messages
 * whose insert succeeded, and only up to the first one that has not: committing past a gap
 * would lose the message in the gap on a crash. Kafka offsets need not be contiguous (compacted
 * topics, transaction markers), so the gap is judged on the offsets actually received.
 *
 * Pure and synchronous: the consumer keeps one tracker per partition and asks it after each
 * completed insert.
 */
export class PartitionOffsets {
  /** Received offsets not yet committable, ascending. */
  private pending: bigint[] = []
  private readonly done = new Set<bigint>()

  /** Records offsets as received (in the order the broker delivered them). */
  received(offsets: Iterable<string | bigint>): void {
    for (const o of offsets) {
      const v = BigInt(o)
      const last = this.pending[this.pending.length - 1]
      if (last !== undefined && v <= last) throw new Error(`offset ${v} received after ${last}: offsets must ascend`)
      this.pending.push(v)
    }
  }

  /** Marks offsets whose events are durably stored (or dead-lettered). */
  completed(offsets: Iterable<string | bigint>): void {
    for (const o of offsets) this.done.add(BigInt(o))
  }

  /**
   * The offset to commit now (Kafka's convention: the next offset to read, i.e. the last
   * completed offset of the unbroken prefix + 1), or undefined when the prefix is empty.
   * The prefix is forgotten once returned.
   */
  takeCommittable(): string | undefined {
    let n = 0
    while (n < this.pending.length && this.done.has(this.pending[n]!)) n++
    if (n === 0) return undefined
    const last = this.pending[n - 1]!
    for (let i = 0; i < n; i++) this.done.delete(this.pending[i]!)
    this.pending = this.pending.slice(n)
    return (last + 1n).toString()
  }

  /** Offsets received and not yet committable. */
  get outstanding(): number {
    return this.pending.length
  }

  /** The first offset received and not yet committable: where a redelivery must start. */
  get firstOutstanding(): string | undefined {
    return this.pending[0]?.toString()
  }
}

/** The same decision as a pure function over plain lists, for tests and reasoning. */
export function committableOffset(received: readonly (string | bigint)[], completed: Iterable<string | bigint>): string | undefined {
  const p = new PartitionOffsets()
  p.received(received)
  p.completed(completed)
  return p.takeCommittable()
}
