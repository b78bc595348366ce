import { describe, expect, it } from 'vitest'
import { ParamBinder } from '../core/params.js'
import { campaignInput } from './campaign.schema.js'
import { parseTsv, unescapeTsv } from './tsv-read.js'
import { fieldsOf, parseTemplate, renderTemplate, templateSql } from './template.js'

/** The template language and its SQL: placeholders over an allow-list, text always bound. */

describe('templates', () => {
  it('parses placeholders with fallbacks and renders them', () => {
    const { parts, issues } = parseTemplate('{{ name }}，您的贷款 {{loan.amount}} 元将于 {{loan.due_date|近期}} 到期 {{tag.aum_tier}}')
    expect(issues).toEqual([])
    expect(fieldsOf(parts)).toEqual(['name', 'loan.amount', 'loan.due_date', 'tag.aum_tier'])
    expect(renderTemplate(parts, { name: '张*', 'loan.amount': '1001.00', 'tag.aum_tier': 'mass' })).toBe('张*，您的贷款 1001.00 元将于 近期 到期 mass')
    expect(renderTemplate(parts, { name: '张*', 'tag.aum_tier': 'mass' })).toBeNull()
  })

  it('refuses unknown fields, expressions and stray braces, with the offset', () => {
    expect(parseTemplate('{{balance}}').issues[0]).toMatchObject({ offset: 0, message: expect.stringMatching(/unknown field "balance"/) })
    expect(parseTemplate('x {{constructor.prototype}}').issues[0]?.offset).toBe(2)
    expect(parseTemplate('{{ name + 1 }}').issues).toHaveLength(1)
    expect(parseTemplate('{{tag.Bad}}').issues).toHaveLength(1)
    expect(parseTemplate('hello {{name').issues[0]).toMatchObject({ offset: 6, message: 'unbalanced {{ or }}' })
    expect(parseTemplate('}} and {{name}}').issues[0]?.offset).toBe(0)
    expect(parseTemplate('{{name|a|b}}').issues).toHaveLength(1)
  })

  it('compiles to SQL in which no template text appears: literals and fallbacks are bound', () => {
    const nasty = "'); DROP TABLE customers; -- {x} \\' "
    const { parts } = parseTemplate(`${nasty}{{name|${"' OR 1=1"}}}`)
    const b = new ParamBinder('q')
    const sql = templateSql(parts, b, (f) => (f === 'name' ? 'c.name_masked' : 'NULL'))
    expect(sql).toBe("concat({q0:String}, coalesce(nullIf(c.name_masked, ''), {q1:String}))")
    expect(Object.values(b.params)).toEqual([nasty, "' OR 1=1"])
    for (let i = 0; i < 200; i++) {
      const text = Array.from({ length: 20 }, () => String.fromCharCode(32 + Math.floor(Math.random() * 95))).join('').replace(/[{}]/g, '')
      const p = parseTemplate(text)
      expect(templateSql(p.parts, new ParamBinder('q'), () => 'x')).toMatch(/^\{q0:String\}$|^concat\(/)
    }
  })

  it('checks every text of a campaign message where it is', () => {
    const base = { name: 'x', purpose: 'service', schedule: { kind: 'cron', cron: '0 9 * * *' } }
    const r = campaignInput.safeParse({ ...base, message: { body: { zh: '好', en: 'ok' }, elder: { body: { zh: '{{nope}}', en: 'ok' } } } })
    expect(r.success).toBe(false)
    expect(r.error?.issues[0]?.path).toEqual(['message', 'elder', 'body', 'zh'])
    const product = campaignInput.safeParse({ ...base, message: { body: { zh: '{{product.name}}', en: 'x' } } })
    expect(product.error?.issues[0]?.message).toMatch(/product_opening/)
    const critical = campaignInput.safeParse({ ...base, priority: 'critical', message: { body: { zh: '好', en: 'ok' } } })
    expect(critical.error?.issues[0]?.path).toEqual(['priority'])
    const noName = campaignInput.safeParse({ ...base, schedule: { kind: 'event', steps: [{ event: { types: ['track'] } }], withinMinutes: 5 }, message: { body: { zh: '好', en: 'ok' } } })
    expect(noName.error?.issues[0]?.path).toEqual(['schedule', 'steps'])
  })
})

describe('TabSeparated reading', () => {
  it('undoes the escapes ClickHouse writes', () => {
    expect(unescapeTsv('a\\tb\\nc\\\\d\\0e\\\'f')).toBe("a\tb\nc\\d\0e'f")
    expect(parseTsv('1\tx\\ty\n2\t\n')).toEqual([['1', 'x\ty'], ['2', '']])
  })
})

describe('template fields by own name only', () => {
  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'constructor.name'])('refuses {{%s}}', (f) => {
    const { issues, parts } = parseTemplate(`hi {{${f}}}`)
    expect(issues).toEqual([expect.objectContaining({ offset: 3, message: expect.stringMatching(/unknown field/) })])
    expect(fieldsOf(parts)).toEqual([])
  })

  it('refuses them in a campaign naming the text', () => {
    const r = campaignInput.safeParse({ name: 'x', purpose: 'service', schedule: { kind: 'cron', cron: '0 9 * * *' }, message: { body: { zh: '{{constructor}}', en: 'ok' } } })
    expect(r.success).toBe(false)
    expect(r.error?.issues.map((i) => i.path.join('.'))).toEqual(['message.body.zh'])
  })
})
