import { describe, expect, it } from 'vitest'
import { createLocalLocks, createRemoteLocks, serveLocks, type ProcessChannel } from './cluster-locks.js'

/** An engine process serving two API processes over in-memory channels that deliver in order on later turns. */
function cluster() {
  const engine = createLocalLocks()
  const server = serveLocks(engine)
  const workers = [1, 2].map((id) => {
    const listeners = new Set<(m: unknown) => void>()
    const state = { open: true }
    const channel: ProcessChannel = {
      send(m) {
        if (!state.open) throw new Error('closed')
        const wire = JSON.parse(JSON.stringify(m)) as unknown
        setImmediate(() => server.handle(id, wire, (r) => setImmediate(() => listeners.forEach((l) => l(JSON.parse(JSON.stringify(r)))))))
      },
      onMessage(l) {
        listeners.add(l)
        return () => listeners.delete(l)
      },
    }
    return { id, state, locks: createRemoteLocks(channel) }
  })
  return { engine, server, workers }
}

const tick = () => new Promise((r) => setTimeout(r, 5))

/** A task that records when it runs and holds the lock for a few turns. */
function recorder() {
  const log: string[] = []
  let inside = 0
  let overlap = false
  const task = (name: string) => async () => {
    if (inside++ > 0) overlap = true
    log.push(`${name} in`)
    await tick()
    log.push(`${name} out`)
    inside--
    return name
  }
  return { log, task, overlapped: () => overlap }
}

describe('locks held by the engine process', () => {
  it('runs the tasks of two API processes and of the engine process itself one at a time per key, in the order asked', async () => {
    const { engine, workers } = cluster()
    const r = recorder()
    const [a, b] = workers
    const results = await Promise.all([
      a!.locks.lock('tenants').run('registry', r.task('a1')),
      b!.locks.lock('tenants').run('registry', r.task('b1')),
      engine.lock('tenants').run('registry', r.task('engine')),
      a!.locks.lock('tenants').run('registry', r.task('a2')),
    ])
    expect(results).toEqual(['a1', 'b1', 'engine', 'a2'])
    expect(r.overlapped()).toBe(false)
    // The engine's own task asked first (it needs no message), then the others as they arrived.
    expect(r.log.filter((l) => l.endsWith(' in'))).toEqual(['engine in', 'a1 in', 'b1 in', 'a2 in'])
  })

  it('keeps other keys and other names apart', async () => {
    const { workers } = cluster()
    const r = recorder()
    const [a, b] = workers
    await Promise.all([a!.locks.lock('push').run(1, r.task('t1')), b!.locks.lock('push').run(2, r.task('t2')), b!.locks.lock('keys').run(1, r.task('k1'))])
    expect(r.overlapped()).toBe(true)
  })

  it('gives the lock back when a task fails, and passes the failure on', async () => {
    const { workers } = cluster()
    const [a, b] = workers
    await expect(a!.locks.lock('keys').run('keys', async () => Promise.reject(new Error('no')))).rejects.toThrow('no')
    expect(await b!.locks.lock('keys').run('keys', async () => 'next')).toBe('next')
  })

  it('frees what an API process held when it dies, and what it was still waiting for', async () => {
    const { server, workers, engine } = cluster()
    const [a] = workers
    let held!: () => void
    const hung = a!.locks.lock('erasure').run(5, () => new Promise<void>((r) => (held = r)))
    void a!.locks.lock('erasure').run(5, async () => undefined)
    for (let i = 0; i < 10 && !held; i++) await tick()
    expect(held).toBeDefined()
    a!.state.open = false
    server.workerGone(a!.id)
    expect(await engine.lock('erasure').run(5, async () => 'engine')).toBe('engine')
    held()
    await hung
  })

  it('refuses a task whose process lost its channel to the engine process', async () => {
    const { workers } = cluster()
    const [a] = workers
    a!.state.open = false
    await expect(a!.locks.lock('tenants').run('registry', async () => 'never')).rejects.toMatchObject({ code: 'SHUTTING_DOWN' })
  })

  it('waits in idle() for the tasks this process runs', async () => {
    const { workers } = cluster()
    const [a] = workers
    const l = a!.locks.lock('push')
    let done = false
    void l.run(1, async () => {
      await tick()
      done = true
    })
    await l.idle()
    expect(done).toBe(true)
  })

  it('leaves messages that are not about locks', () => {
    const { server } = cluster()
    for (const m of [undefined, 'qianmian:stop', { type: 'qianmian:leases:call', id: 1 }, { type: 'qianmian:lock:acquire', id: 1, name: 'x', key: {} }]) expect(server.handle(1, m, () => undefined)).toBe(false)
  })
})
