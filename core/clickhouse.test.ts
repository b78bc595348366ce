import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { createClickHouse } from './clickhouse.js'
import { loadConfig } from './config.js'

describe('the embedded engine', () => {
  it('refuses a data directory another live process holds, naming it; a stale pid file is ignored', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-lock-'))
    try {
      fs.writeFileSync(path.join(dir, 'qianmian.pid'), `${process.ppid}\n`)
      await expect(createClickHouse(loadConfig({ QIANMIAN_DATA_DIR: dir }))).rejects.toMatchObject({
        code: 'DATA_DIR_LOCKED',
        message: expect.stringContaining(`pid ${process.ppid}`),
      })
      fs.writeFileSync(path.join(dir, 'qianmian.pid'), '999999999\n')
      const h = await createClickHouse(loadConfig({ QIANMIAN_DATA_DIR: dir }))
      expect(fs.readFileSync(path.join(dir, 'qianmian.pid'), 'utf8').trim()).toBe(String(process.pid))
      await h.close()
      expect(fs.existsSync(path.join(dir, 'qianmian.pid'))).toBe(false)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
