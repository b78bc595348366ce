import { LRUCache } from 'lru-cache'
import { AppError } from './errors.js'

/**
 * The structural tenant check behind `TenantDb`. The embedded engine has no row policies, so the
 * tenant boundary is a proof, made on the engine's own parse of each distinct SQL text
 * (`EXPLAIN AST`), that every read of a tenant table is filtered to the bound tenant. Counting
 * table names against placeholders (the earlier rule) let `WHERE {tenant:UInt16} > 0`, quoted
 * names and `merge()` through; a parse tree does not.
 *
 * The rule, for one SQL text:
 * 1. `{tenant:UInt16}` is replaced by a marker call before parsing, so the tree shows exactly where
 *    the tenant is used (bound values would be indistinguishable from literals). A text that
 *    names the marker itself, takes an `Identifier` parameter (the tree would change with its
 *    value), contains QUALIFY (the tree does not label it: it could pass for WHERE), or puts a
 *    control character in a quoted name (the tree is printed one node a line) is refused unread.
 * 2. Every SELECT at any depth (subqueries, CTE bodies, UNION / EXCEPT / INTERSECT branches,
 *    IN and scalar subqueries, INSERT … SELECT and CREATE … AS SELECT sources) is checked on its
 *    own. Each table it reads by name must be one of:
 *    - a tenant table (matched on the last part of its name, whatever its database or quoting),
 *      and then a top-level conjunct of that SELECT's own WHERE or PREWHERE is
 *      `alias.tenant_id = {tenant:UInt16}` (or `table.tenant_id`). A bare `tenant_id` counts only
 *      when the SELECT reads one table and nothing in the query is aliased `tenant_id`. A JOIN ON
 *      does not count: the tree does not say whether the join is RIGHT or FULL, where ON filters
 *      nothing on the preserved side.
 *    - a CTE defined in the same text (a name followed by `AS (`), never a tenant table name;
 *    - a shared table of `SHARED_TABLES` (metadata, no tenant's rows), or the working table of
 *      one bulk import (`import_stage_<id>` …, created and filled for one tenant's file).
 * 3. `x IN name` counts as a read of `name`; a tenant table cannot be filtered there and is refused.
 *    Table functions other than pure generators (`numbers`, `zeros`, `values`, `generate_series`,
 *    `null`) are refused (`merge`, `remote`, `cluster`, `view`, `file`, `url`, `s3` …), and so are the
 *    functions that reach a table by name (`joinGet`, `dictGet` …, `hasColumnInTable`).
 * 4. Statements: SELECT; INSERT (into a tenant table the inserted `tenant_id` must be the marker or
 *    a `tenant_id` column of a SELECT that reads only tenant tables, each proven filtered);
 *    ALTER … DELETE / UPDATE and DELETE FROM on a tenant table with the filter as a conjunct of
 *    their WHERE; CREATE, DROP, TRUNCATE, OPTIMIZE
 *    only of tables that are not tenant tables. Every other statement is refused.
 *
 * A verdict is cached per SQL text (the texts are code constants, or compiled from rules with
 * every value bound), so a text costs one `EXPLAIN AST` round trip the first time, then nothing.
 * `EXPLAIN AST` only parses: on a server it needs no grant on the tables it names.
 */

/** Tables that hold no tenant's rows and that tenant queries may read. */
export const SHARED_TABLES = ['tenants', 'system.one', 'system.numbers', 'system.parts'] as const
/** The working tables of one bulk import (ingest/import/import.staging.ts): one import, one tenant. */
const WORKING_TABLE = /^import_(raw|land|stage|keys)_[0-9a-f]{32}$/

const MARKER = '__qianmian_tenant_scope'
const TENANT_PARAM = '{tenant:UInt16}'
const TABLE_FUNCTIONS_ALLOWED = new Set(['numbers', 'numbers_mt', 'zeros', 'zeros_mt', 'values', 'generate_series', 'generateseries', 'null'])
const TABLE_BY_NAME = /^(?:joinget.*|dict.*|hascolumnintable)$/
const SET_FUNCTION = /^(?:global)?(?:not)?(?:null)?in(?:ignoreset)?$/
const STATEMENTS = new Set([
  'SelectWithUnionQuery',
  'SelectIntersectExceptQuery',
  'InsertQuery',
  'AlterQuery',
  'DeleteQuery',
  'CreateQuery',
  'DropQuery',
  'TruncateQuery',
  'OptimizeQuery',
])

export interface AstNode {
  type: string
  /** The rest of the line: a name, a literal, a function name; without alias and children count. */
  value: string
  alias: string | undefined
  children: AstNode[]
}

/** Parses `EXPLAIN AST` output (one node a line, one space of indent per level). */
export function parseExplainAst(lines: readonly string[]): AstNode {
  const root: AstNode = { type: '(root)', value: '', alias: undefined, children: [] }
  const stack: { depth: number; node: AstNode }[] = [{ depth: -1, node: root }]
  for (const line of lines) {
    if (!line.trim()) continue
    const depth = line.length - line.trimStart().length
    let rest = line.trimStart().replace(/ \(children \d+\)$/, '')
    let alias: string | undefined
    const a = / \(alias (.*)\)$/.exec(rest)
    if (a) {
      alias = a[1]
      rest = rest.slice(0, a.index)
    }
    const sp = rest.indexOf(' ')
    const node: AstNode = { type: sp < 0 ? rest : rest.slice(0, sp), value: sp < 0 ? '' : rest.slice(sp + 1).trim(), alias, children: [] }
    if (!/^[A-Za-z]\w*$/.test(node.type)) throw violation(`the parse tree has an unreadable line: ${JSON.stringify(line)}`)
    while (stack[stack.length - 1]!.depth >= depth) stack.pop()
    if (stack[stack.length - 1]!.depth !== depth - 1) throw violation(`the parse tree skips a level at ${JSON.stringify(line)}`)
    stack[stack.length - 1]!.node.children.push(node)
    stack.push({ depth, node })
  }
  return root
}

const violation = (why: string) => new AppError('TENANT_SCOPE_VIOLATION', `A tenant query was refused: ${why}.`)

const lastPart = (name: string) => name.slice(name.lastIndexOf('.') + 1)

/** Checks of the text itself, before it is parsed; returns the text to parse. */
export function prepareForParse(sql: string, tenantTables: ReadonlySet<string>): { text: string; ctes: Set<string> } {
  if (sql.includes(MARKER)) throw violation(`the text names ${MARKER}`)
  if (/\{\s*\w+\s*:\s*Identifier\s*\}/i.test(sql)) throw violation('an Identifier parameter changes the query with its value')
  if (/\bqualify\b/i.test(sql)) throw violation('QUALIFY is not allowed in tenant queries')
  scanQuotedNames(sql)
  const ctes = new Set<string>()
  for (const m of sql.matchAll(/(?<![\w.`"])([A-Za-z_]\w*)\s+AS\s*\(/gi)) {
    const name = m[1]!
    if (!tenantTables.has(name)) ctes.add(name)
  }
  return { text: sql.replaceAll(TENANT_PARAM, `${MARKER}()`), ctes }
}

/**
 * Refuses a control character inside a quoted name: the tree prints names raw, one node a line.
 * Strings and comments are skipped the way ClickHouse reads them; where this scanner and the
 * engine could disagree (heredocs, `#` comments), it reads the text as code, which only refuses more.
 */
function scanQuotedNames(sql: string): void {
  let i = 0
  while (i < sql.length) {
    const c = sql[i]!
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i)
      i = end < 0 ? sql.length : end + 1
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1
      i += 2
      while (i < sql.length && depth > 0) {
        const step = sql.startsWith('/*', i) ? 1 : sql.startsWith('*/', i) ? -1 : 0
        depth += step
        i += step ? 2 : 1
      }
    } else if (c === "'" || c === '`' || c === '"') {
      let j = i + 1
      for (; j < sql.length; j++) {
        const d = sql[j]!
        if (d === '\\') j++
        else if (d === c) {
          if (sql[j + 1] === c) j++
          else break
        } else if (c !== "'" && d < ' ') throw violation('a quoted name contains a control character')
      }
      i = j + 1
    } else i++
  }
}

interface Ctx {
  tenantTables: ReadonlySet<string>
  ctes: ReadonlySet<string>
  /** Some node of the query is aliased `tenant_id`: a bare `tenant_id` may then mean it. */
  tenantIdAliased: boolean
}

const isMarker = (n: AstNode | undefined) =>
  n?.type === 'Function' && n.value === MARKER && n.children.every((c) => c.type === 'ExpressionList' && c.children.length === 0)

const args = (fn: AstNode) => (fn.children[0]?.type === 'ExpressionList' ? fn.children[0].children : [])

/** The top-level conjuncts of an expression (nested ANDs flattened). */
function conjuncts(expr: AstNode | undefined, out: AstNode[] = []): AstNode[] {
  if (!expr) return out
  if (expr.type === 'Function' && expr.value === 'and') for (const a of args(expr)) conjuncts(a, out)
  else out.push(expr)
  return out
}

/** The column a conjunct `col = {tenant:UInt16}` filters, or undefined. */
function filteredColumn(c: AstNode): string | undefined {
  if (c.type !== 'Function' || c.value !== 'equals') return undefined
  const [l, r] = args(c)
  if (args(c).length !== 2) return undefined
  if (isMarker(r) && l?.type === 'Identifier') return l.value
  if (isMarker(l) && r?.type === 'Identifier') return r.value
  return undefined
}

function walkAll(n: AstNode, f: (n: AstNode) => void): void {
  f(n)
  for (const c of n.children) walkAll(c, f)
}

/** Checks a parsed statement against the rule in the header; throws TENANT_SCOPE_VIOLATION. */
export function checkTenantAst(root: AstNode, tenantTables: ReadonlySet<string>, ctes: ReadonlySet<string> = new Set()): void {
  const stmt = root.children[0]
  if (!stmt || root.children.length !== 1) throw violation('not one statement')
  if (!STATEMENTS.has(stmt.type)) throw violation(`${stmt.type} statements are not allowed`)
  let tenantIdAliased = false
  walkAll(stmt, (n) => {
    if (n.alias !== undefined && lastPart(n.alias) === 'tenant_id') tenantIdAliased = true
  })
  const ctx: Ctx = { tenantTables, ctes, tenantIdAliased }
  const isTenant = (name: string) => tenantTables.has(lastPart(name))

  switch (stmt.type) {
    case 'InsertQuery': {
      const target = stmt.children.find((c) => c.type === 'Identifier')
      if (!target) throw violation('an INSERT without a named table (table functions are not allowed)')
      const source = stmt.children.find((c) => c.type === 'SelectWithUnionQuery')
      if (isTenant(target.value) && source) checkInsertTenantColumn(stmt, source, target.value, tenantIdAliased, tenantTables)
      break
    }
    case 'AlterQuery':
    case 'DeleteQuery': {
      const target = stmt.children.filter((c) => c.type === 'Identifier').pop()
      if (!target) throw violation(`a ${stmt.type} without a table`)
      if (!isTenant(target.value)) break
      const where =
        stmt.type === 'DeleteQuery'
          ? [stmt.children.find((c) => c.type !== 'Identifier')]
          : (stmt.children.find((c) => c.type === 'ExpressionList')?.children ?? []).map((cmd) => {
              if (cmd.type !== 'AlterCommand' || (cmd.value !== 'DELETE' && cmd.value !== 'UPDATE'))
                throw violation(`ALTER ${cmd.value} on tenant table ${target.value}`)
              return cmd.children.find((c) => !(c.type === 'ExpressionList' && c.children.every((a) => a.type === 'Assignment')))
            })
      for (const w of where) {
        if (!conjuncts(w).some((c) => filteredColumn(c) === 'tenant_id'))
          throw violation(`a change of tenant table ${target.value} without tenant_id = ${TENANT_PARAM} in its WHERE`)
      }
      break
    }
    case 'CreateQuery':
    case 'DropQuery':
    case 'TruncateQuery':
    case 'OptimizeQuery':
      for (const c of stmt.children)
        if (c.type === 'Identifier' && isTenant(c.value)) throw violation(`${stmt.type} of tenant table ${c.value}`)
      break
  }
  walk(stmt, ctx)
}

/** INSERT INTO a tenant table … SELECT: the tenant_id written must be the scope's. */
function checkInsertTenantColumn(stmt: AstNode, source: AstNode, table: string, tenantIdAliased: boolean, tenantTables: ReadonlySet<string>): void {
  const cols = stmt.children.find((c) => c.type === 'ExpressionList')?.children ?? []
  const pos = cols.findIndex((c) => c.type === 'Identifier' && c.value === 'tenant_id')
  if (pos < 0) throw violation(`INSERT INTO ${table} … SELECT must list tenant_id among its columns`)
  const refuse = () => violation(`INSERT INTO ${table}: the tenant_id written is not ${TENANT_PARAM} nor the filtered source's tenant_id`)
  const checkUnion = (u: AstNode) => {
    for (const s of selectsOf(u)) {
      const candidates = selectLists(s)
      if (candidates.length > 1) {
        // WITH or SELECT? The tree does not say: the value must pass in both readings.
        for (const c of candidates) if (!writesScopeTenant(c.children[pos], c.children)) throw refuse()
        continue
      }
      const list = candidates[0]?.children ?? []
      const tables = s.children.find((c) => c.type === 'TablesInSelectQuery')?.children ?? []
      const only = tables.length === 1 ? tables[0]!.children.find((c) => c.type === 'TableExpression')?.children[0] : undefined
      // `SELECT * FROM (…)`: the column is at the same position in the subquery.
      if (list.length === 1 && list[0]!.type === 'Asterisk' && only?.type === 'Subquery' && only.children[0]) {
        checkUnion(only.children[0])
        continue
      }
      // A `tenant_id` column counts when every table of that SELECT is a tenant table (each then
      // proven filtered): a shared or working table's tenant_id could be anyone's.
      const onlyTenantTables =
        tables.length > 0 &&
        tables.every((el) => {
          const id = el.children.find((c) => c.type === 'TableExpression')?.children.find((c) => c.type === 'TableIdentifier')
          return id !== undefined && tenantTables.has(lastPart(id.value))
        })
      if (!writesScopeTenant(list[pos], list, onlyTenantTables)) throw refuse()
    }
  }
  // The marker, or a `tenant_id` column of filtered tenant tables that nothing aliases.
  const writesScopeTenant = (e: AstNode | undefined, list: AstNode[], column = false) =>
    isMarker(e) || (column && e?.type === 'Identifier' && lastPart(e.value) === 'tenant_id' && !tenantIdAliased && !list.some((x) => x.type === 'Asterisk'))
  checkUnion(source)
}

/** The SELECTs of a UNION / EXCEPT / INTERSECT, at its top level. */
function selectsOf(u: AstNode, out: AstNode[] = []): AstNode[] {
  for (const c of u.children) {
    if (c.type === 'SelectQuery') out.push(c)
    else if (c.type === 'ExpressionList' || c.type === 'SelectWithUnionQuery' || c.type === 'SelectIntersectExceptQuery') selectsOf(c, out)
  }
  return out
}

/**
 * The candidates for a SelectQuery's select list. The tree does not label its children: the first
 * list is WITH when it holds a WithElement (a CTE); otherwise two leading lists are read both ways
 * (a scalar WITH before the select list, or the select list before a GROUP BY with no FROM).
 */
function selectLists(s: AstNode): AstNode[] {
  const [a, b, c] = s.children
  if (a?.type !== 'ExpressionList') return []
  if (b?.type !== 'ExpressionList') return [a]
  // With a FROM after the two lists (GROUP BY would come after it), they are WITH and SELECT.
  if (c?.type === 'TablesInSelectQuery' || a.children.some((x) => x.type === 'WithElement')) return [b]
  return [a, b]
}

function walk(n: AstNode, ctx: Ctx): void {
  if (n.type === 'SelectQuery') checkSelect(n, ctx)
  if (n.type === 'Function') {
    const name = n.value.toLowerCase()
    if (TABLE_BY_NAME.test(name)) throw violation(`${n.value}() reaches a table by name`)
    if (SET_FUNCTION.test(name)) {
      const rhs = args(n)[1]
      if (rhs?.type === 'Identifier' && checkNamedTable(rhs.value, ctx, `IN ${rhs.value}`) === 'tenant')
        throw violation(`IN ${rhs.value} reads a tenant table that cannot be filtered there`)
    }
  }
  if (n.type === 'TableExpression') {
    for (const c of n.children) {
      if (c.type === 'Function' && !TABLE_FUNCTIONS_ALLOWED.has(c.value.toLowerCase())) throw violation(`table function ${c.value}() is not allowed`)
    }
  }
  for (const c of n.children) walk(c, ctx)
}

function checkNamedTable(name: string, ctx: Ctx, where: string): 'tenant' | 'other' {
  if (ctx.tenantTables.has(lastPart(name))) return 'tenant'
  if ((SHARED_TABLES as readonly string[]).includes(name) || WORKING_TABLE.test(name) || (!name.includes('.') && ctx.ctes.has(name))) return 'other'
  throw violation(`${where}: ${name} is neither a tenant table, a CTE of the query, a shared table nor an import's working table`)
}

function checkSelect(s: AstNode, ctx: Ctx): void {
  const ti = s.children.findIndex((c) => c.type === 'TablesInSelectQuery')
  if (ti < 0) return
  const tables: { name: string; alias: string | undefined }[] = []
  let elements = 0
  for (const el of s.children[ti]!.children) {
    const te = el.children.find((c) => c.type === 'TableExpression')
    if (!te) continue // ARRAY JOIN
    elements++
    const id = te.children.find((c) => c.type === 'TableIdentifier')
    if (id && checkNamedTable(id.value, ctx, 'FROM') === 'tenant') tables.push({ name: id.value, alias: id.alias })
  }
  if (!tables.length) return
  // WHERE and PREWHERE are the expressions right after the table list (GROUP BY, WINDOW, ORDER BY
  // are lists; a HAVING there has no GROUP BY and cannot name a bare column; QUALIFY is refused).
  const filters: AstNode[] = []
  for (let i = ti + 1; i < s.children.length && i <= ti + 2; i++) {
    const c = s.children[i]!
    if (c.type === 'ExpressionList' || c.type === 'Set') break
    conjuncts(c, filters)
  }
  const cols = new Set(filters.map(filteredColumn).filter((c): c is string => c !== undefined))
  for (const t of tables) {
    const names = [t.alias, t.name, lastPart(t.name)].filter((x): x is string => !!x).map((x) => `${x}.tenant_id`)
    const bare = elements === 1 && !ctx.tenantIdAliased && cols.has('tenant_id')
    if (!bare && !names.some((q) => cols.has(q)))
      throw violation(`${t.name}${t.alias ? ` (${t.alias})` : ''} is read without ${t.alias ?? t.name}.tenant_id = ${TENANT_PARAM} in the WHERE of its own SELECT`)
  }
}

export interface TenantScopeChecker {
  /** Resolves when the text is proven tenant-scoped; rejects with TENANT_SCOPE_VIOLATION otherwise. */
  check(sql: string, params: Record<string, unknown>): Promise<void>
  readonly size: number
}

/**
 * The cached checker. `explain` runs `EXPLAIN AST <text>` with the given parameters bound and
 * returns its lines; verdicts (and in-flight checks) are kept per text.
 */
export function createTenantScopeChecker(deps: {
  tenantTables: readonly string[]
  explain: (text: string, params: Record<string, unknown>) => Promise<string[]>
  maxEntries?: number
}): TenantScopeChecker {
  const tenantTables = new Set(deps.tenantTables)
  const verdicts = new LRUCache<string, Promise<void>>({ max: deps.maxEntries ?? 4096 })
  async function decide(sql: string, params: Record<string, unknown>): Promise<void> {
    const { text, ctes } = prepareForParse(sql, tenantTables)
    const lines = await deps.explain(text, params)
    checkTenantAst(parseExplainAst(lines), tenantTables, ctes)
  }
  return {
    check(sql, params) {
      let v = verdicts.get(sql)
      if (!v) {
        v = decide(sql, params)
        verdicts.set(sql, v)
        // An engine error (a syntax error, an unreachable server) is not a verdict: forget it.
        v.catch((e: unknown) => {
          if (!(e instanceof AppError && e.code === 'TENANT_SCOPE_VIOLATION') && verdicts.get(sql) === v) verdicts.delete(sql)
        })
      }
      return v
    },
    get size() {
      return verdicts.size
    },
  }
}
