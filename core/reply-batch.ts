import type { FastifyReply } from 'fastify'

/**
 * JSON bodies that are ready now, written together once this turn of the event loop has read
 * every request it holds and computed their answers, instead of one by one as each is ready.
 *
 * Why: a reply written alone wakes its reader (the app gateway, a proxy or a load generator
 * on the host) once per response, and a reader asleep in epoll is woken by the kernel from the
 * writer's thread. On the layout route that wake-up was the largest single item of the serving
 * thread's profile (14% of its samples, in the kernel under `sock_def_readable`). Written back to
 * back, the replies of one turn wake a reader once, and it finds the rest waiting. This is what
 * Redis does with the replies of an event-loop pass (written just before it sleeps again).
 * Measured on the layout route (2 cores, the load generator on the same host, alternating
 * builds): at 32 connections 15,920 layouts/s against 11,149, the serving thread's CPU 55 µs a
 * layout against 80, p99 11 against 10 ms; at 8 connections 13,554 against 11,075, p99 2
 * against 3 ms. A reply waits at most for the other requests of its turn; alone in a turn, for
 * one `setImmediate`.
 */
export function createReplyBatch(onError: (err: unknown) => void) {
  let replies: FastifyReply[] = []
  let bodies: Buffer[] = []
  const flush = () => {
    const r = replies
    const b = bodies
    replies = []
    bodies = []
    for (let i = 0; i < r.length; i++) {
      try {
        void r[i]!.type('application/json; charset=utf-8').send(b[i])
      } catch (err) {
        // One reply that cannot be sent (its connection gone in a way fastify did not catch)
        // must not keep the rest of the turn's replies unsent.
        onError(err)
      }
    }
  }
  return {
    /** Sends `body` as the reply's JSON after this turn, with the other replies of the turn. */
    send(reply: FastifyReply, body: Buffer): void {
      if (replies.push(reply) === 1) setImmediate(flush)
      bodies.push(body)
    },
  }
}
