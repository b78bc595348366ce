import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { tsvField } from './tsv.js'

describe('tsvField', () => {
  it('escapes what TabSeparated needs escaped', () => {
    expect(tsvField('a\tb\nc\\d\re')).toBe('a\\tb\\nc\\\\d\\re')
    expect(tsvField(['x', "it's", 'a\\b', 't\tb'])).toBe("['x','it\\'s','a\\\\b','t\\tb']")
    expect(tsvField(3.5)).toBe('3.5')
    expect(tsvField(null)).toBe('\\N')
  })
})

describe('insertTsv on the engine', () => {
  let engine: TestEngine
  beforeAll(async () => {
    engine = await openTestEngine({ migrate: false })
    await engine.db.system.command('CREATE TABLE tsv_rt (s String, a Array(String), n Float64) ENGINE = Memory')
  })
  afterAll(async () => engine?.close())

  it('round-trips awkward strings and arrays exactly', async () => {
    const nasty = ['tab\there', 'line\nbreak', 'back\\slash', "quote's", '{"json":"va\\"l"}', '中文', 'nul\0byte', 'cr\rx']
    const rows = nasty.map((s, i) => [s, [s, `x${i}`], i + 0.25])
    await engine.db.system.insertTsv('tsv_rt', ['s', 'a', 'n'], rows)
    const back = await engine.db.system.query<{ s: string; a: string[]; n: number }>('SELECT s, a, n FROM tsv_rt ORDER BY n')
    expect(back.map((r) => [r.s, r.a, r.n])).toEqual(rows)
  })
})
