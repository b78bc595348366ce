import { Readable } from 'node:stream'
import { ZipFile } from 'yazl'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { exposuresSql } from '../core/exposures.sql.js'

/**
 * A customer's copy of their data as one ZIP, for histories too large for JSON pages: a person
 * at a branch opens it on Windows and reads README.txt (Chinese, then English) for what each
 * file holds. The sections are small and read before the answer starts; the events and the home
 * screens shown are read from the engine in pages while the archive is being sent, so what is
 * held at once is about one page, however long the history. File names are ASCII (every unzip
 * tool shows them alike); README.txt has a UTF-8 byte-order mark and CRLF lines, which Notepad
 * needs.
 */

/** Events per engine query. The embedded engine hands a query's result over whole. */
export const EVENT_PAGE_ROWS = 10_000
/** An events file ends at the first page boundary past either bound (Excel opens 1,048,576 lines; Notepad slows past tens of MB). */
export const EVENT_FILE_ROWS = 100_000
export const EVENT_FILE_BYTES = 64 * 2 ** 20
/**
 * Events files are deflated at level 1: on event pages it took two fifths to a quarter of level 6's
 * time for a file about 14% larger, and the archive is bound by this process's CPU, not the wire.
 */
const EVENT_COMPRESSION_LEVEL = 1
/** Page boundaries found per boundary query: one file's worth. */
const BOUNDS_PER_QUERY = 10

type Label = { zh: string; en: string }
export interface ArchiveLabels {
  sections: Record<string, Label>
  fields: Record<string, Label>
}
type Sections = Record<string, { rows: Record<string, unknown>[]; truncated: boolean }>

/** Which sections go into which file, and what the file is (README.txt lists them in this order). */
const FILES: readonly { name: string; sections: readonly string[]; about: Label; streamed?: boolean }[] = [
  { name: 'profile.json', sections: ['profile', 'traits'], about: { zh: '基本信息，以及应用上报的属性', en: 'the profile, and the traits the app sent' } },
  { name: 'consents.json', sections: ['consents', 'consentHistory'], about: { zh: '当前授权，以及每一次授权或撤回的记录', en: 'the consents as they stand, and every grant or withdrawal' } },
  { name: 'identities.json', sections: ['identities', 'identityHistory'], about: { zh: '客户号、应用匿名标识与设备，以及每一次关联', en: 'the customer number, app ids and devices linked to the customer, and each link made' } },
  { name: 'banking.json', sections: ['accounts', 'loans', 'loanSchedules', 'bills', 'billsPaidForOthers'], about: { zh: '银行导入的账户、贷款、还款计划与账单，以及为他人代缴的账单', en: 'the accounts, loans, repayment schedules and bills the bank imported, and the bills paid for others' } },
  { name: 'tags.json', sections: ['tags', 'tagHistory'], about: { zh: '客户当前的标签及每个标签的含义（中英文），以及标签的历史', en: 'the tags the customer holds now, each with what it means (Chinese and English), and their history' } },
  { name: 'recommendations.json', sections: ['recommendations'], about: { zh: '推荐模型认为客户偏好的内容', en: 'the items the recommendation model holds the customer close to' } },
  { name: 'segments.json', sections: ['segments'], about: { zh: '进入或退出客群的记录', en: 'when the customer entered or left a segment' } },
  { name: 'pushes.json', sections: ['pushes'], about: { zh: '推送记录及送达结果', en: 'the pushes prepared for the customer and their outcome' } },
  // One exposure per home screen shown: as many as the events can be, so read in pages like them.
  { name: 'layouts.json', sections: ['layouts'], streamed: true, about: { zh: '向客户展示过的首页（按时间从早到晚）', en: 'the home screens shown to the customer, oldest first' } },
]
const EVENT_FIELDS = ['timestamp', 'message_id', 'type', 'event', 'properties', 'context'] as const
const LAYOUT_FIELDS = ['served_at', 'screen', 'modules', 'items'] as const

export interface ArchiveInput {
  db: TenantDb
  /** The customer's keys, merged ones included. */
  ks: number[]
  customerNo: string
  sections: Sections
  labels: ArchiveLabels
  pageRows?: number
  fileRows?: number
  fileBytes?: number
}

/**
 * The customer's events: those stored under their keys, and those sent under an app id before
 * the app knew who was signed in (stored without a key, linked since), as readers resolve them
 * (core/identity.sql.ts) and the erasure deletes them.
 */
export const CUSTOMER_EVENTS = `FROM events WHERE tenant_id = {tenant:UInt16} AND (customer_key IN (SELECT arrayJoin({ks:Array(UInt32)}))
  OR (customer_key = 0 AND anonymous_id IN (
    SELECT id_value FROM identities FINAL
    WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id' AND customer_key IN (SELECT arrayJoin({ks:Array(UInt32)})))))`
const WHERE = CUSTOMER_EVENTS
// Keyset over (timestamp, message_id); the plain timestamp bound lets the primary key skip what is behind.
const AFTER = ` AND timestamp >= fromUnixTimestamp64Milli({t:Int64}, 'UTC') AND (timestamp, message_id) > (fromUnixTimestamp64Milli({t:Int64}, 'UTC'), {m:String})`
const UPTO = ` AND timestamp <= fromUnixTimestamp64Milli({t2:Int64}, 'UTC') AND (timestamp, message_id) <= (fromUnixTimestamp64Milli({t2:Int64}, 'UTC'), {m2:String})`
/** The last key of each full page among the next `n` events: narrow columns only. */
const boundsSql = (after: boolean) =>
  `SELECT ms, message_id FROM (
     SELECT ms, message_id, row_number() OVER (ORDER BY ms, message_id) AS rn FROM (
       SELECT toUnixTimestamp64Milli(timestamp) AS ms, message_id ${WHERE}${after ? AFTER : ''} ORDER BY timestamp, message_id LIMIT {n:UInt32}))
   WHERE rn % {page:UInt32} = 0 ORDER BY ms, message_id`
/**
 * One NDJSON line per event, built by the engine: properties and context are stored as JSON
 * text and go in as they are (a value that is somehow not JSON goes in as a string), with any
 * line break in them, which valid JSON has only between tokens, made a space.
 */
const raw = (c: string) => `if(isValidJSON(${c}), replaceAll(replaceAll(${c}, '\\n', ' '), '\\r', ' '), toJSONString(${c}))`
const LINE = `concat('{"timestamp":', toJSONString(concat(replaceOne(toString(timestamp), ' ', 'T'), 'Z')), ',"message_id":', toJSONString(message_id),
  ',"type":', toJSONString(toString(type)), ',"event":', toJSONString(toString(event)), ',"properties":', ${raw('properties')}, ',"context":', ${raw('context')}, '}')`
const pageSql = (after: boolean, upto: boolean) => `SELECT ${LINE} AS line ${WHERE}${after ? AFTER : ''}${upto ? UPTO : ''} ORDER BY timestamp, message_id FORMAT TabSeparatedRaw`

const boundRow = z.object({ ms: z.coerce.number(), message_id: z.string() })
type Cursor = { t: number; m: string }
interface Page {
  text: Buffer
  rows: number
}

/**
 * Every event of the keys, oldest first, in pages of about `pageRows`: each boundary query finds
 * the next pages' last keys, each page is the events between two keys. The final page is open
 * ended, so events arriving meanwhile with a later time are included; each event is in exactly
 * one page whatever arrives.
 */
/**
 * Every layout exposure of the keys, oldest first. Exposures have no key of their own, so a page
 * ends at a time and takes every exposure of its last millisecond: each is in exactly one page
 * (a page may pass `pageRows` by the exposures sharing that millisecond).
 */
const layoutsWhere = (after: boolean, upto: boolean) =>
  `customer_key IN (SELECT arrayJoin({ks:Array(UInt32)}))${after ? ` AND served_at > fromUnixTimestamp64Milli({t:Int64}, 'UTC')` : ''}${upto ? ` AND served_at <= fromUnixTimestamp64Milli({t2:Int64}, 'UTC')` : ''}`
async function* layoutPages(db: TenantDb, ks: number[], pageRows: number): AsyncGenerator<Page> {
  let after: number | undefined
  for (;;) {
    const at = after === undefined ? {} : { t: after }
    const [end] = await db.query(
      `SELECT toUnixTimestamp64Milli(served_at) AS ms FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND ${layoutsWhere(after !== undefined, false)}
       ORDER BY served_at LIMIT 1 OFFSET {off:UInt32}`,
      { ks, ...at, off: pageRows - 1 },
      z.object({ ms: z.coerce.number() }),
    )
    const sql = `SELECT ${LAYOUT_FIELDS.join(', ')} FROM ${exposuresSql(layoutsWhere(after !== undefined, !!end))}
      ORDER BY served_at, screen, modules, items FORMAT JSONEachRow`
    const chunks: Buffer[] = []
    for await (const chunk of await db.stream(sql, { ks, ...at, ...(end ? { t2: end.ms } : {}) })) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks)
    let rows = 0
    for (let i = text.indexOf(10); i !== -1; i = text.indexOf(10, i + 1)) rows++
    yield { text, rows }
    if (!end) return
    after = end.ms
  }
}

async function* eventPages(db: TenantDb, ks: number[], pageRows: number): AsyncGenerator<Page> {
  let cursor: Cursor | undefined
  const read = async (upto: Cursor | undefined): Promise<Page> => {
    const params = { ks, ...(cursor ?? {}), ...(upto ? { t2: upto.t, m2: upto.m } : {}) }
    const chunks: Buffer[] = []
    for await (const chunk of await db.stream(pageSql(!!cursor, !!upto), params)) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks)
    let rows = 0
    for (let i = text.indexOf(10); i !== -1; i = text.indexOf(10, i + 1)) rows++
    return { text, rows }
  }
  for (;;) {
    const bounds = await db.query(boundsSql(!!cursor), { ks, ...(cursor ?? {}), n: pageRows * BOUNDS_PER_QUERY, page: pageRows }, boundRow)
    for (const b of bounds) {
      const upto = { t: b.ms, m: b.message_id }
      yield await read(upto)
      cursor = upto
    }
    if (bounds.length < BOUNDS_PER_QUERY) {
      yield await read(undefined)
      return
    }
  }
}

const pad = (n: number) => String(n).padStart(6, '0')
const eventFile = (n: number) => `events/events-${pad(n)}.ndjson`

/** A section file: the customer, each section's title and field names in both languages, its rows. */
function sectionFile(input: ArchiveInput, sections: readonly string[], exportedAt: string): Buffer {
  const doc: Record<string, unknown> = { customer_no: input.customerNo, exported_at: exportedAt, sections: {} }
  for (const s of sections) {
    const sec = input.sections[s] ?? { rows: [], truncated: false }
    const names = [...new Set(sec.rows.flatMap((r) => Object.keys(r)))]
    const fields = Object.fromEntries(names.map((f) => [f, input.labels.fields[f] ?? { zh: f, en: f }]))
    ;(doc.sections as Record<string, unknown>)[s] = { title: input.labels.sections[s], fields, truncated: sec.truncated, rows: sec.rows }
  }
  return Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8')
}

/** README.txt: what each file is, and every field, in Chinese and then in English. */
function readme(input: ArchiveInput, exportedAt: string): Buffer {
  const f = input.labels.fields
  const legend = (names: readonly string[], lang: 'zh' | 'en') => names.map((n) => `    ${n}: ${f[n]?.[lang] ?? n}`)
  const part = (lang: 'zh' | 'en') => {
    const zh = lang === 'zh'
    const lines = zh
      ? [`客户 ${input.customerNo} 的个人信息副本（《个人信息保护法》第四十五条），导出时间 ${exportedAt}（UTC）。`, '各文件内容：', '']
      : [`A copy of the personal information held about customer ${input.customerNo} (PIPL art. 45), exported ${exportedAt} (UTC).`, 'What each file holds:', '']
    for (const file of FILES) {
      lines.push(`${file.name}: ${file.about[lang]}`)
      for (const s of file.sections) {
        const sec = input.sections[s]
        const names = file.streamed ? LAYOUT_FIELDS : [...new Set((sec?.rows ?? []).flatMap((r) => Object.keys(r)))]
        lines.push(`  ${s} (${input.labels.sections[s]?.[lang] ?? s})${sec?.truncated ? (zh ? '：仅含最新的部分记录' : ': the newest records only') : ''}`, ...legend(names, lang))
      }
    }
    lines.push(
      zh
        ? `events/events-NNNNNN.ndjson：应用行为事件，按时间从早到晚；每行一个 JSON 对象；每个文件至多 ${EVENT_FILE_ROWS} 条。`
        : `events/events-NNNNNN.ndjson: the app events, oldest first; one JSON object a line; at most ${EVENT_FILE_ROWS} a file.`,
      ...legend(EVENT_FIELDS, lang),
      zh ? 'manifest.json：文件清单及每个文件的记录数。' : 'manifest.json: the list of files and how many records each holds.',
      zh ? 'JSON 文件可用记事本或浏览器打开。' : 'The JSON files open in Notepad or a web browser.',
      '',
    )
    return lines
  }
  return Buffer.from(`\ufeff${[...part('zh'), '-----', '', ...part('en')].join('\r\n')}`, 'utf8')
}

/**
 * The archive as a byte stream. A failure while reading a page destroys the stream with the
 * error (the answer has started: the client sees a cut transfer, never a ZIP that looks whole);
 * the stream's closing (the client gone) stops the reading.
 */
export function streamArchive(input: ArchiveInput): Readable {
  const pageRows = input.pageRows ?? EVENT_PAGE_ROWS
  const fileRows = input.fileRows ?? EVENT_FILE_ROWS
  const fileBytes = input.fileBytes ?? EVENT_FILE_BYTES
  const exportedAt = new Date().toISOString()
  const mtime = new Date(exportedAt)
  const zip = new ZipFile()
  const out = zip.outputStream as Readable
  let current: Readable | undefined
  const fail = (err: Error) => out.destroy(err)
  zip.on('error', fail)
  out.on('close', () => current?.destroy())

  const manifest: { file: string; records: number }[] = []
  const add = (name: string, body: Buffer, records: number) => {
    zip.addBuffer(body, name, { mtime })
    manifest.push({ file: name, records })
  }
  add('README.txt', readme(input, exportedAt), 0)
  for (const file of FILES) {
    if (file.streamed) addLayouts(file.name, file.sections[0]!)
    else add(file.name, sectionFile(input, file.sections, exportedAt), file.sections.reduce((n, s) => n + (input.sections[s]?.rows.length ?? 0), 0))
  }

  /** A section file whose rows are read page by page as it is written: the same shape as the others. */
  function addLayouts(name: string, section: string) {
    const entry = { file: name, records: 0 }
    manifest.push(entry)
    const head = JSON.stringify({ title: input.labels.sections[section], fields: Object.fromEntries(LAYOUT_FIELDS.map((f) => [f, input.labels.fields[f] ?? { zh: f, en: f }])), truncated: false })
    async function* body(): AsyncGenerator<Buffer> {
      const intro = { customer_no: input.customerNo, exported_at: exportedAt }
      yield Buffer.from(`${JSON.stringify(intro).slice(0, -1)},"sections":{${JSON.stringify(section)}:${head.slice(0, -1)},"rows":[\n`, 'utf8')
      for await (const page of layoutPages(input.db, input.ks, pageRows)) {
        if (!page.rows) continue
        // JSONEachRow lines become array items: a comma ends every row but the export's last.
        const lines = page.text.toString('utf8').trimEnd().split('\n')
        yield Buffer.from(`${entry.records ? ',\n' : ''}${lines.join(',\n')}`, 'utf8')
        entry.records += lines.length
      }
      yield Buffer.from('\n]}}}\n', 'utf8')
    }
    zip.addReadStreamLazy(name, { mtime }, (cb) => {
      current = Readable.from(body(), { objectMode: false })
      current.on('error', fail)
      cb(null, current)
    })
  }

  const pages = eventPages(input.db, input.ks, pageRows)
  const nextPage = async () => {
    const p = await pages.next()
    return p.done || p.value.rows === 0 ? undefined : p.value
  }
  const finish = () => {
    const events = manifest.filter((m) => m.file.startsWith('events/'))
    const doc = { customer_no: input.customerNo, exported_at: exportedAt, events: { files: events.length, records: events.reduce((n, m) => n + m.records, 0) }, files: manifest }
    zip.addBuffer(Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8'), 'manifest.json', { mtime })
    zip.end()
  }
  // Files are added one at a time, each once the one before knows more events follow.
  async function* fileBody(n: number, first: Page | undefined): AsyncGenerator<Buffer> {
    let page = first ?? (await nextPage())
    let rows = 0
    let bytes = 0
    while (page) {
      yield page.text
      rows += page.rows
      bytes += page.text.length
      if (rows >= fileRows || bytes >= fileBytes) {
        const next = await nextPage()
        manifest.push({ file: eventFile(n), records: rows })
        if (next) addEventFile(n + 1, next)
        else finish()
        return
      }
      page = await nextPage()
    }
    manifest.push({ file: eventFile(n), records: rows })
    finish()
  }
  function addEventFile(n: number, first: Page | undefined) {
    zip.addReadStreamLazy(eventFile(n), { mtime, compressionLevel: EVENT_COMPRESSION_LEVEL }, (cb) => {
      current = Readable.from(fileBody(n, first), { objectMode: false })
      // yazl pipes the stream and does not listen for its errors.
      current.on('error', fail)
      cb(null, current)
    })
  }
  addEventFile(1, undefined)
  return out
}
