import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../core/errors.js'
import { parseInteractionLines, parseInteractionsText, readInteractionsFile } from './interactions.js'
import { tableRows } from './table.js'

function failure(fn: () => unknown): AppError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(AppError)
    return e as AppError
  }
  throw new Error('expected a failure')
}

describe('tab-separated u.data style', () => {
  it('reads user, item, rating, timestamp and maps ids to dense indices by first appearance', () => {
    const t = parseInteractionsText('196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n')
    expect(t.length).toBe(3)
    expect(t.users).toEqual(['196', '186'])
    expect(t.items).toEqual(['242', '302', '377'])
    expect([...t.user]).toEqual([0, 1, 0])
    expect([...t.item]).toEqual([0, 1, 2])
    expect([...t.rating]).toEqual([3, 3, 1])
    expect([...t.timestamp]).toEqual([881250949, 891717742, 878887116])
  })

  it('defaults a missing rating to 1 and a missing timestamp to 0', () => {
    const t = parseInteractionsText('a\tx\nb\ty\t4\n')
    expect(tableRows(t)).toEqual([
      { user: 'a', item: 'x', rating: 1, timestamp: 0 },
      { user: 'b', item: 'y', rating: 4, timestamp: 0 },
    ])
  })

  it('skips blank lines but still counts them in line numbers', () => {
    const e = failure(() => parseInteractionsText('a\tx\t1\t5\n\nb\ty\tbad\t5\n'))
    expect(e.code).toBe('VALIDATION_FAILED')
    expect(e.message).toContain('line 3')
    expect(e.issues).toEqual([expect.objectContaining({ field: 'rating', line: 3 })])
  })

  it('refuses lines with too many or too few fields, naming the field', () => {
    expect(failure(() => parseInteractionsText('a\tx\t1\t5\textra')).issues?.[0]?.field).toBe('column 5')
    const e = failure(() => parseInteractionsText('a\tx\t1\t5\nb'))
    expect(e.issues?.[0]).toMatchObject({ field: 'item', line: 2 })
    expect(failure(() => parseInteractionsText('a\tx\n\t\ty')).issues?.[0]).toMatchObject({ field: 'user', line: 2 })
  })

  it('refuses a bad timestamp', () => {
    const e = failure(() => parseInteractionsText('a\tx\t1\tyesterday'))
    expect(e.issues?.[0]).toMatchObject({ field: 'timestamp', line: 1 })
    expect(e.message).toContain('"yesterday"')
  })

  it('reads a tab-separated file with a typed header by name (RecBole atomic files)', () => {
    const t = parseInteractionsText('user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n')
    expect(tableRows(t)).toEqual([{ user: '196', item: '242', rating: 3, timestamp: 881250949 }])
  })
})

describe('CSV with a header', () => {
  it('recognises MovieLens ratings.csv column names', () => {
    const t = parseInteractionsText('userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n')
    expect(tableRows(t)).toEqual([
      { user: '1', item: '31', rating: 2.5, timestamp: 1260759144 },
      { user: '1', item: '1029', rating: 3, timestamp: 1260759179 },
    ])
  })

  it('finds columns in any order, ignores unknown ones and defaults absent ones', () => {
    const t = parseInteractionsText('channel,item_id,USER_ID\napp,card-gold,c1\nweb,loan,c2\n')
    expect(tableRows(t)).toEqual([
      { user: 'c1', item: 'card-gold', rating: 1, timestamp: 0 },
      { user: 'c2', item: 'loan', rating: 1, timestamp: 0 },
    ])
  })

  it('reads quoted fields with commas and doubled quotes, and ISO timestamps', () => {
    const t = parseInteractionsText('user,item,timestamp\n"c,1","the ""gold"" card",2024-03-01T08:00:00Z\n')
    expect(tableRows(t)).toEqual([
      { user: 'c,1', item: 'the "gold" card', rating: 1, timestamp: Date.parse('2024-03-01T08:00:00Z') / 1000 },
    ])
  })

  it('requires a header naming user and item', () => {
    const e = failure(() => parseInteractionsText('1,31,2.5,1260759144\n'))
    expect(e.issues?.[0]).toMatchObject({ field: 'header', line: 1 })
  })

  it('refuses a row whose field count differs from the header, naming the missing column', () => {
    const e = failure(() => parseInteractionsText('userId,movieId,rating\n1,31,4\n2,40\n'))
    expect(e.issues?.[0]).toMatchObject({ field: 'rating', line: 3 })
    expect(failure(() => parseInteractionsText('userId,movieId\n1,31,4\n')).issues?.[0]).toMatchObject({ field: 'column 3', line: 2 })
  })

  it('refuses an unclosed quote', () => {
    const e = failure(() => parseInteractionsText('user,item\n"c1,x\n'))
    expect(e.issues?.[0]).toMatchObject({ line: 2 })
    expect(e.message).toContain('not closed')
  })
})

describe('streaming', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qm-eval-'))
  })
  afterAll(async () => rm(dir, { recursive: true, force: true }))

  it('reads a file line by line, with a byte-order mark and CRLF line ends', async () => {
    const path = join(dir, 'ratings.csv')
    await writeFile(path, '\uFEFFuserId,movieId,rating,timestamp\r\n1,31,2.5,1260759144\r\n2,31,4,1260759200\r\n')
    const t = await readInteractionsFile(path)
    expect(t.users).toEqual(['1', '2'])
    expect(t.items).toEqual(['31'])
    expect([...t.rating]).toEqual([2.5, 4])
  })

  it('names the file and line of a bad row', async () => {
    const path = join(dir, 'u.data')
    await writeFile(path, '1\t2\t3\t4\n1\t3\tfive\t4\n')
    await expect(readInteractionsFile(path)).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining('u.data line 2, field rating'),
    })
  })

  it('accepts any async line source', async () => {
    async function* lines() {
      yield 'a\tx\t5\t10'
      yield 'b\tx\t4\t20'
    }
    const t = await parseInteractionLines(lines())
    expect(t.length).toBe(2)
    expect(t.items).toEqual(['x'])
  })
})
