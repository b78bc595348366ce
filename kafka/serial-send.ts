/**
 * One send at a time on an idempotent producer, with group commit and a deadline per request.
 *
 * kafkajs numbers an idempotent producer's batches per partition when a send succeeds, so two
 * sends in flight at once can carry the same sequence number; the broker takes the second for a
 * retry of the first, answers it with success and does not append it (kafkajs issue #1005). A
 * caller would then acknowledge events that are not in the log. So a send starts only after the
 * previous one settled, including one whose caller already gave up on it: a timed-out send is
 * still retried inside kafkajs and may land. A send that failed gives its sequence numbers back,
 * which a batch the broker appended anyway makes unsafe too: the producer is replaced after a
 * failure (fresh-producer.ts).
 *
 * What arrives while a send is in flight goes out together in the next send, in order of arrival,
 * up to `limits.maxBytes` for any one partition: kafkajs sends a partition's share of a send as
 * one record batch, which the broker refuses whole past its limit, so an uncapped group would
 * fail every request in it, of every tenant, on every retry. A request larger than the cap goes
 * in sends of its own, in parts; it is acknowledged once its last part is. Should the broker still
 * refuse a shared send as too large (its limit below the one configured), each request in it is
 * sent again on its own, so only a request too large by itself fails.
 *
 * Each request has its own deadline from the moment it was queued: one that passes while it
 * waits is rejected and what it has not sent is not sent; one that passes while its send is in
 * flight is rejected (the send may still land; the consumer drops the copy a retry brings by
 * messageId).
 */
export interface SerialSender<M> {
  /** Resolves once sends carrying all of `messages` were acknowledged; rejects at the deadline or on failure. */
  submit(messages: M[]): Promise<void>
  /** Waits for the send in flight (if any) to settle. */
  idle(): Promise<void>
}

export interface SendLimits<M> {
  /** The most bytes one send may carry for one partition. */
  maxBytes: number
  /** A message's size as the broker counts it, or more. */
  sizeOf(m: M): number
  /** The partition a message goes to; without it, the cap holds for the whole send. */
  partitionOf?(m: M): number
  /** Whether a send failed for being too large (each request in a shared one is then sent alone). */
  tooLarge?(e: unknown): boolean
}

export class SendTimeoutError extends Error {
  constructor(ms: number) {
    super(`no acknowledgement within ${ms} ms`)
    this.name = 'SendTimeoutError'
  }
}

export function createSerialSender<M>(send: (messages: M[]) => Promise<unknown>, timeoutMs: number, limits?: SendLimits<M>): SerialSender<M> {
  type Waiting = {
    messages: M[]
    sizes: number[]
    partitions: number[]
    /** Messages acknowledged so far, from the start. */
    sent: number
    settled: boolean
    timer: NodeJS.Timeout
    resolve(): void
    reject(e: unknown): void
  }
  /** A run of one request's messages in a send. */
  type Part = { w: Waiting; from: number; to: number }
  let waiting: Waiting[] = []
  let running: Promise<void> | undefined

  const settle = (w: Waiting, e?: unknown) => {
    if (w.settled) return
    w.settled = true
    clearTimeout(w.timer)
    if (e === undefined) w.resolve()
    else w.reject(e)
  }
  const acknowledged = (p: Part) => {
    p.w.sent = p.to
    if (p.to === p.w.messages.length) settle(p.w)
  }

  /** The next send: what waits, in order, until one partition would pass the cap (but never nothing). */
  function nextSend(): Part[] {
    const parts: Part[] = []
    const bytes = new Map<number, number>()
    let count = 0
    for (const w of waiting) {
      if (w.settled) continue
      let to = w.sent
      while (to < w.messages.length) {
        const size = w.sizes[to]!
        const p = w.partitions[to]!
        const after = (bytes.get(p) ?? 0) + size
        if (limits && count > 0 && after > limits.maxBytes) break
        bytes.set(p, after)
        count++
        to++
      }
      if (to > w.sent) parts.push({ w, from: w.sent, to })
      if (to < w.messages.length) break
    }
    return parts
  }

  async function pump() {
    for (;;) {
      // Requests whose deadline passed while they waited are dropped, not sent.
      waiting = waiting.filter((w) => !w.settled)
      const parts = nextSend()
      if (!parts.length) return
      try {
        await send(parts.flatMap((p) => p.w.messages.slice(p.from, p.to)))
        parts.forEach(acknowledged)
      } catch (e) {
        if (parts.length > 1 && limits?.tooLarge?.(e)) {
          for (const p of parts) {
            if (p.w.settled) continue
            try {
              await send(p.w.messages.slice(p.from, p.to))
              acknowledged(p)
            } catch (alone) {
              settle(p.w, alone)
            }
          }
        } else {
          for (const p of parts) settle(p.w, e)
        }
      }
    }
  }

  function kick() {
    if (running) return
    running = pump().finally(() => {
      running = undefined
      // A request queued in the instant between the loop's last check and here.
      if (waiting.some((w) => !w.settled)) kick()
    })
  }

  return {
    submit(messages) {
      return new Promise<void>((resolve, reject) => {
        if (!messages.length) return resolve()
        const w: Waiting = {
          messages,
          sizes: messages.map((m) => limits?.sizeOf(m) ?? 0),
          partitions: messages.map((m) => limits?.partitionOf?.(m) ?? 0),
          sent: 0,
          settled: false,
          resolve,
          reject,
          timer: setTimeout(() => settle(w, new SendTimeoutError(timeoutMs)), timeoutMs),
        }
        waiting.push(w)
        kick()
      })
    },
    async idle() {
      while (running) await running
    },
  }
}
