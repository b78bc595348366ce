import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from './log.js'

describe('logger redaction', () => {
  it('redacts keys and personal fields but keeps its own name', () => {
    const lines: string[] = []
    const dest = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) })
    const log = createLogger({ level: 'info', name: 'qianmian', destination: dest })
    log.info({ req: { headers: { authorization: 'Bearer qm_w_secret' } }, traits: { phone: '13800138000', name: '张三' }, apiKey: 'qm_a_x' }, 'hello')
    const out = JSON.parse(lines[0]!)
    expect(out.name).toBe('qianmian')
    expect(JSON.stringify(out)).not.toMatch(/13800138000|张三|qm_w_secret|qm_a_x/)
  })
})
