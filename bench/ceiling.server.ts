import fs from 'node:fs'
import Fastify from 'fastify'

/**
 * A bare fastify server answering GET /constant with the bytes of a file, as application/json:
 * no hooks, no auth, no logging. Benchmarks load it beside the real server to show what HTTP and
 * the kernel cost for a body of the same size on the same machine. Run as a child process:
 * `node --import tsx bench/ceiling.server.ts <body-file>`; it prints `listening on <url>`.
 */

const file = process.argv[2]
if (!file) {
  console.error('usage: ceiling.server.ts <body-file>')
  process.exit(2)
}
const body = fs.readFileSync(file)
const app = Fastify({ logger: false })
app.get('/constant', (_req, reply) => reply.type('application/json; charset=utf-8').send(body))
const url = await app.listen({ host: '127.0.0.1', port: 0 })
console.log(`listening on ${url}`)
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)))
