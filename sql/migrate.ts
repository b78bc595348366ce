import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import type { Logger } from 'pino'
import type { SystemDb } from '../core/db.js'
import { AppError, errText } from '../core/errors.js'
import { projectPath } from '../core/paths.js'
import { chDateTime } from '../core/time.js'

/**
 * Applies `sql/NNN_name.sql` files in order and records each with a checksum in
 * `schema_migrations`. An applied file that changed is refused (write a new migration instead);
 * the first failing statement stops the run and the file is not recorded, so the next run retries
 * it. Statements are written idempotently (IF NOT EXISTS) because ClickHouse DDL is not
 * transactional: a file that failed half-way is safe to apply again.
 */

export const SQL_DIR = projectPath('sql')
const FILE_PATTERN = /^(\d{3})_([a-z0-9_]+)\.sql$/

export interface MigrationFile {
  version: number
  name: string
  file: string
  checksum: string
  statements: string[]
}

export interface MigrationStatus {
  version: number
  name: string
  state: 'applied' | 'pending' | 'changed' | 'missing'
  appliedAt?: string
}

const appliedRow = z
  .object({
    version: z.coerce.number(),
    last_name: z.string(),
    last_checksum: z.string(),
    last_applied_at: z.string(),
  })
  .transform((r) => ({ version: r.version, name: r.last_name, checksum: r.last_checksum, applied_at: r.last_applied_at }))

export function readMigrations(dir: string = SQL_DIR): MigrationFile[] {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
  const seen = new Map<number, string>()
  return files.map((file) => {
    const m = FILE_PATTERN.exec(file)
    if (!m) {
      throw new AppError('MIGRATION_INVALID', `${file}: migration files are named NNN_name.sql (lower case).`)
    }
    const version = Number(m[1])
    const other = seen.get(version)
    if (other) throw new AppError('MIGRATION_INVALID', `${file} and ${other} share version ${m[1]}.`)
    seen.set(version, file)
    const text = fs.readFileSync(path.join(dir, file), 'utf8')
    const statements = splitStatements(text)
    if (statements.length === 0) throw new AppError('MIGRATION_INVALID', `${file} has no statements.`)
    return {
      version,
      name: m[2]!,
      file,
      checksum: crypto.createHash('sha256').update(text).digest('hex'),
      statements,
    }
  })
}

/**
 * Splits a script on `;` outside quotes and comments. The HTTP interface runs one statement per
 * request, so the runner must split; a full SQL parser is not needed for DDL files we own.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = []
  let cur = ''
  let i = 0
  while (i < sql.length) {
    const c = sql[i]!
    const next = sql[i + 1]
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i)
      i = end === -1 ? sql.length : end
      continue
    }
    if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2)
      i = end === -1 ? sql.length : end + 2
      cur += ' '
      continue
    }
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1
      while (j < sql.length) {
        if (sql[j] === '\\') j += 2
        else if (sql[j] === c && sql[j + 1] === c) j += 2
        else if (sql[j] === c) break
        else j++
      }
      cur += sql.slice(i, j + 1)
      i = j + 1
      continue
    }
    if (c === ';') {
      if (cur.trim()) out.push(cur.trim())
      cur = ''
      i++
      continue
    }
    cur += c
    i++
  }
  if (cur.trim()) out.push(cur.trim())
  return out
}

export interface Migrator {
  status(): Promise<MigrationStatus[]>
  migrate(): Promise<{ applied: string[] }>
}

export function createMigrator(deps: { system: SystemDb; log: Logger; dir?: string }): Migrator {
  const { system, log } = deps
  const dir = deps.dir ?? SQL_DIR

  async function ensureTable() {
    await system.command(`CREATE TABLE IF NOT EXISTS schema_migrations
      (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC'), duration_ms UInt32)
      ENGINE = MergeTree ORDER BY version`)
  }

  async function applied() {
    await ensureTable()
    const rows = await system.query(
      `SELECT version, argMax(name, applied_at) AS last_name, argMax(checksum, applied_at) AS last_checksum,
              toString(max(applied_at)) AS last_applied_at
       FROM schema_migrations GROUP BY version ORDER BY version`,
      {},
      appliedRow,
    )
    return new Map(rows.map((r) => [r.version, r]))
  }

  async function status(): Promise<MigrationStatus[]> {
    const files = readMigrations(dir)
    const done = await applied()
    const out: MigrationStatus[] = files.map((f) => {
      const a = done.get(f.version)
      if (!a) return { version: f.version, name: f.name, state: 'pending' }
      return {
        version: f.version,
        name: f.name,
        state: a.checksum === f.checksum ? 'applied' : 'changed',
        appliedAt: a.applied_at,
      }
    })
    for (const [version, a] of done) {
      if (!files.some((f) => f.version === version)) out.push({ version, name: a.name, state: 'missing' })
    }
    return out.sort((a, b) => a.version - b.version)
  }

  async function migrate() {
    const files = readMigrations(dir)
    const done = await applied()
    // Refuse before touching anything: a changed applied file means the schema and the code
    // disagree, and re-running it would hide that.
    for (const f of files) {
      const a = done.get(f.version)
      if (a && a.checksum !== f.checksum) {
        throw new AppError(
          'MIGRATION_CHANGED',
          `${f.file} was changed after it was applied (checksum ${a.checksum.slice(0, 12)}… now ${f.checksum.slice(0, 12)}…). ` +
            'Restore it and add a new migration file for the change.',
        )
      }
    }
    const appliedNow: string[] = []
    for (const f of files) {
      if (done.has(f.version)) continue
      const started = Date.now()
      for (const [i, stmt] of f.statements.entries()) {
        try {
          await system.command(stmt)
        } catch (cause) {
          throw new AppError(
            'MIGRATION_FAILED',
            `${f.file}, statement ${i + 1} of ${f.statements.length}: ${errText(cause)}`,
            { cause },
          )
        }
      }
      const duration = Date.now() - started
      await system.insert('schema_migrations', [
        {
          version: f.version,
          name: f.name,
          checksum: f.checksum,
          applied_at: chDateTime(new Date()),
          duration_ms: duration,
        },
      ])
      log.info({ migration: f.file, durationMs: duration }, 'migration applied')
      appliedNow.push(f.file)
    }
    return { applied: appliedNow }
  }

  return { status, migrate }
}
