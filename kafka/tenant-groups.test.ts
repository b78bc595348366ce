import { describe, expect, it } from 'vitest'
import { AppError } from '../core/errors.js'
import type { EventWriter, WriteResult } from '../ingest/event-writer.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { pendingEvent } from '../test/fixtures.js'
import { isTransient, writeTenantGroup } from './tenant-groups.js'

const ev = (id: string) => pendingEvent({ messageId: id })
const ids = (events: readonly PendingEvent[]) => events.map((e) => e.messageId)

/** A writer answering each submission with `answer` (a result, or an error to throw), and recording the calls. */
function fakeWriter(answer: (ids: string[], call: number) => WriteResult | Error) {
  const calls: string[][] = []
  const writer: Pick<EventWriter, 'submit'> = {
    async submit(_tenant, events) {
      calls.push(ids(events))
      const a = answer(ids(events), calls.length)
      if (a instanceof Error) throw a
      return a
    },
  }
  return { writer, calls }
}
const stored = (n: number): WriteResult => ({ stored: n, duplicates: 0 })
const internal = () => new AppError('INTERNAL', 'The events could not be stored.', { cause: new TypeError("Cannot read properties of undefined (reading 'key')") })

describe('one tenant’s events of a Kafka batch', () => {
  it('a group that fails for good is written event by event: each event that fails alone is a dead letter with the reason, the others are stored', async () => {
    const f = fakeWriter((list) => (list.includes('bad') ? internal() : stored(list.length)))
    const r = await writeTenantGroup(f.writer, 1, [ev('a'), ev('bad'), ev('c')], 'k', {})
    expect(r.stored).toBe(2)
    expect(r.dead).toEqual([{ index: 1, reason: expect.stringMatching(/^failed \(INTERNAL\): Cannot read properties of undefined \(reading 'key'\)$/) as unknown }])
    expect(f.calls).toEqual([['a', 'bad', 'c'], ['a'], ['bad'], ['c']])
  })

  it('the events the writer refused on their own are dead letters with the field and reason, the group is not tried again', async () => {
    const f = fakeWriter(() => ({ stored: 1, duplicates: 1, refused: [{ position: 2, field: 'traits.bio', message: 'the storage engine refused a value (CANNOT_PARSE_ESCAPE_SEQUENCE)' }] }))
    const r = await writeTenantGroup(f.writer, 1, [ev('a'), ev('b'), ev('c')], 'k', {})
    expect(r).toEqual({ stored: 1, duplicates: 1, dead: [{ index: 2, reason: 'unstorable traits.bio: the storage engine refused a value (CANNOT_PARSE_ESCAPE_SEQUENCE)' }] })
    expect(f.calls).toHaveLength(1)
  })

  it('a failure of the moment keeps the whole group for later, whether the group or every event alone meets it', async () => {
    for (const e of [new AppError('OVERLOADED'), new AppError('RATE_LIMITED'), new AppError('STORAGE_UNAVAILABLE'), new AppError('SHUTTING_DOWN')]) {
      await expect(writeTenantGroup(fakeWriter(() => e).writer, 1, [ev('a')], 'k', {})).rejects.toBe(e)
    }
    const down = new AppError('STORAGE_UNAVAILABLE')
    const f = fakeWriter((list) => (list.length > 1 ? internal() : down))
    await expect(writeTenantGroup(f.writer, 1, [ev('a'), ev('b')], 'k', {})).rejects.toBe(down)
  })

  it('an event alone refused for its tenant’s share of the queue, beside others taken, is tried again rather than failing the batch', async () => {
    let refusedOnce = false
    const f = fakeWriter((list) => {
      if (list.length > 1) return internal()
      if (list[0] === 'b' && !refusedOnce) {
        refusedOnce = true
        return new AppError('RATE_LIMITED')
      }
      return stored(1)
    })
    const r = await writeTenantGroup(f.writer, 1, [ev('a'), ev('b'), ev('c')], 'k', {})
    expect(r).toEqual({ stored: 3, duplicates: 0, dead: [] })
    expect(f.calls).toEqual([['a', 'b', 'c'], ['a'], ['b'], ['c'], ['b']])
  })

  it('tells failures of the moment from the others', () => {
    expect(isTransient(new AppError('STORAGE_UNAVAILABLE'))).toBe(true)
    expect(isTransient(new AppError('QUERY_MEMORY_LIMIT'))).toBe(true)
    expect(isTransient(new AppError('INTERNAL'))).toBe(false)
    expect(isTransient(new AppError('VALIDATION_FAILED'))).toBe(false)
    expect(isTransient(new TypeError('x'))).toBe(false)
  })
})
