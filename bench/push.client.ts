/**
 * A notification service's delivery loop over HTTP, in its own process: pull up to `batch`
 * targets, acknowledge them all delivered, repeat until `count` targets or nothing is due.
 * Run by the push benchmark: `node --import tsx bench/push.client.ts <url> <key> <count> <batch>`;
 * prints one JSON line with what it did and how long each half took.
 */

const [url, key, countArg, batchArg] = process.argv.slice(2)
if (!url || !key || !countArg || !batchArg) {
  console.error('usage: push.client.ts <url> <read-key> <count> <batch>')
  process.exit(2)
}
const count = Number(countArg)
const batch = Number(batchArg)
const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }

async function post<T>(path: string, body: unknown): Promise<{ json: T; bytes: number }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text.slice(0, 300)}`)
  return { json: JSON.parse(text) as T, bytes: Buffer.byteLength(text) }
}

let done = 0
let pullMs = 0
let ackMs = 0
let pullBytes = 0
const t0 = performance.now()
while (done < count) {
  let t = performance.now()
  const pulled = await post<{ targets: { targetId: string }[] }>('/v1/push/pull', { limit: Math.min(batch, count - done), leaseSeconds: 600 })
  pullMs += performance.now() - t
  pullBytes += pulled.bytes
  const targets = pulled.json.targets
  if (!targets.length) break
  t = performance.now()
  const acked = await post<{ accepted: number; rejected: unknown[] }>('/v1/push/ack', { results: targets.map((x) => ({ targetId: x.targetId, status: 'delivered' })) })
  ackMs += performance.now() - t
  if (acked.json.rejected.length) throw new Error(`${acked.json.rejected.length} acknowledgements rejected`)
  done += targets.length
}
console.log(JSON.stringify({ targets: done, seconds: (performance.now() - t0) / 1000, pullMs, ackMs, pullBytesPerTarget: done ? pullBytes / done : 0 }))
