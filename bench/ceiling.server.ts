import cluster from 'node:cluster'
import fs from 'node:fs'
import Fastify from 'fastify'

/**
 * A bare fastify server answering GET /constant with the bytes of a file, as application/json:
 * no hooks, no auth, no logging. Benchmarks load it beside the real server to show what HTTP and
 * the kernel cost for a body of the same size on the same machine. Run as a child process:
 * `node --import tsx bench/ceiling.server.ts <body-file> [processes]`; it prints
 * `listening on <url>`. With processes > 1 it runs as the API on several processes does (Node's
 * cluster sharing one port): what more processes add to a bare answer on this machine.
 */

const file = process.argv[2]
const processes = Number(process.argv[3] ?? 1)
if (!file || !Number.isInteger(processes) || processes < 1) {
  console.error('usage: ceiling.server.ts <body-file> [processes]')
  process.exit(2)
}

if (processes > 1 && cluster.isPrimary) {
  // Workers listening on port 0 share one port the primary picks; each says so when it listens.
  let ready = 0
  let url = ''
  for (let i = 0; i < processes; i++) {
    cluster.fork().on('message', (m: { url?: string }) => {
      if (!m.url) return
      url = m.url
      if (++ready === processes) console.log(`listening on ${url}`)
    })
  }
  cluster.on('exit', (_w, code) => {
    if (!stopping) process.exit(code ?? 1)
  })
  let stopping = false
  process.on('SIGTERM', () => {
    stopping = true
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM')
    process.exit(0)
  })
} else {
  const body = fs.readFileSync(file)
  const app = Fastify({ logger: false })
  app.get('/constant', (_req, reply) => reply.type('application/json; charset=utf-8').send(body))
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  if (cluster.isWorker) process.send!({ url })
  else console.log(`listening on ${url}`)
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)))
}
