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
 * What arrives while a send is in flight goes out together in the next send. Each request has
 * its own deadline from the moment it was queued: one that passes while it waits is rejected
 * and its messages are not sent at all; one that passes while its send is in flight is rejected
 * (the send may still land; the consumer drops the copy a retry brings by messageId).
 */
export interface SerialSender<M> {
  /** Resolves once a send carrying `messages` was acknowledged; rejects at the deadline or on failure. */
  submit(messages: M[]): Promise<void>
  /** Waits for the send in flight (if any) to settle. */
  idle(): Promise<void>
}

export class SendTimeoutError extends Error {
  constructor(ms: number) {
    super(`no acknowledgement within ${ms} ms`)
    this.name = 'SendTimeoutError'
  }
}

export function createSerialSender<M>(send: (messages: M[]) => Promise<unknown>, timeoutMs: number): SerialSender<M> {
  type Waiting = { messages: M[]; settled: boolean; timer: NodeJS.Timeout; resolve(): void; reject(e: unknown): void }
  let waiting: Waiting[] = []
  let running: Promise<void> | undefined

  const settle = (w: Waiting, e?: unknown) => {
    if (w.settled) return
    w.settled = true
    clearTimeout(w.timer)
    if (e === undefined) w.resolve()
    else w.reject(e)
  }

  async function pump() {
    while (waiting.length) {
      // Requests whose deadline passed while they waited are dropped, not sent.
      const group = waiting.filter((w) => !w.settled)
      waiting = []
      if (!group.length) continue
      try {
        await send(group.flatMap((w) => w.messages))
        for (const w of group) settle(w)
      } catch (e) {
        for (const w of group) settle(w, e)
      }
    }
  }

  function kick() {
    if (running) return
    running = pump().finally(() => {
      running = undefined
      // A request queued in the instant between the loop's last check and here.
      if (waiting.length) kick()
    })
  }

  return {
    submit(messages) {
      return new Promise<void>((resolve, reject) => {
        const w: Waiting = { messages, settled: false, resolve, reject, timer: setTimeout(() => settle(w, new SendTimeoutError(timeoutMs)), timeoutMs) }
        waiting.push(w)
        kick()
      })
    },
    async idle() {
      while (running) await running
    },
  }
}
