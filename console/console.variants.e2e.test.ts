import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { englishLeft, expectFits } from './e2e.checks.js'
import { approveBySecondHolder, apiCaller, CHROMIUM, shot, signedInPage, SIZES, startDemoConsole, type DemoConsole, type SizeName } from './e2e.setup.js'

/**
 * Message variants (A/B) in Chinese at a desktop's 1440×900 and a phone's 390×844: a campaign
 * made with two variants in the form (a third added and removed, the split's sum refused until it
 * is 100), saved, approved by a second holder, run, and its results read per variant. Each screen
 * is checked for English left, for nothing sticking out sideways, and for page errors.
 */

describe('the console makes a campaign with two message variants and shows their results, on a desktop and a phone', () => {
  let demo: DemoConsole
  let browser: Browser | undefined
  const pages: Partial<Record<SizeName, Page>> = {}
  const problems: string[] = []

  const call = apiCaller(() => demo)

  beforeAll(async () => {
    demo = await startDemoConsole()
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    for (const s of SIZES) pages[s.name] = await signedInPage(browser, demo.server.url, demo.adminKey, s, problems)
  }, 420_000)

  afterAll(async () => {
    await browser?.close()
    await demo?.close()
  })

  it.each(SIZES)('creates a campaign with variants A and B, refuses a split that is not 100, and reads the results per variant at $width×$height', async (size) => {
    const p = pages[size.name]!
    const id = `e2e-ab-${size.name[0]}`
    await p.getByTestId('nav-campaigns').click()
    await p.getByTestId('new-campaign').click()
    await p.getByTestId('c-id').fill(id)
    await p.getByTestId('c-name').fill(`理财 A/B ${size.name[0]}`)
    await p.getByTestId('c-bodyZh').fill('{{name}}您好，新一期理财已开售。')
    await p.getByTestId('c-bodyEn').fill('Hello {{name}}, a new wealth product is on sale.')

    // Two variants, then a third added and taken away: the shares are spread evenly each time.
    await p.getByTestId('add-variant').click()
    await expect.poll(() => p.getByTestId('v-weight-B').inputValue()).toBe('50')
    await p.getByTestId('add-variant').click()
    expect(await p.getByTestId('v-weight-A').inputValue()).toBe('34')
    await p.getByTestId('remove-variant-C').click()
    expect(await p.getByTestId('v-weight-C').count()).toBe(0)
    await p.getByTestId('v-B-bodyZh').fill('{{name}}您好，限时专享理财，今天起购。')
    await p.getByTestId('v-B-bodyEn').fill('Hello {{name}}, a limited wealth offer starts today.')

    // A split of 50 + 40 is said to be wrong as it is typed, and the server refuses it naming the field.
    await p.getByTestId('v-weight-B').fill('40')
    expect(await p.getByTestId('split-sum').textContent()).toContain('90%')
    expect(await p.getByTestId('split-sum').getAttribute('class')).toContain('issue')
    await p.getByTestId('save-campaign').click()
    await expect.poll(() => p.getByTestId('campaign-issues').textContent(), { timeout: 15_000 }).toContain('须为 100%')
    expect(await p.getByTestId('campaign-issues').textContent()).toContain('variants')
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'split not 100')
    await shot(p, `ab-split-refused-${size.name}`)

    await p.getByTestId('v-weight-A').fill('60')
    expect(await p.getByTestId('split-sum').getAttribute('class')).not.toContain('issue')
    await p.getByTestId('save-campaign').click()
    await expect.poll(() => p.getByTestId('campaign-status').textContent(), { timeout: 15_000 }).toMatch(/1$/)
    const saved = await call<{ message?: unknown; variants: { id: string; weight: number; message: { body: { zh: string } } }[] }>('GET', `/v1/push/campaigns/${id}`)
    expect(saved.json.variants.map((v) => [v.id, v.weight])).toEqual([['A', 60], ['B', 40]])
    expect(saved.json.variants[1]!.message.body.zh).toContain('限时专享')
    expect(saved.json.message).toBeUndefined()

    // Approved by a colleague, run now; the results panel has a row per variant.
    await approveBySecondHolder(demo.server.url, demo.adminKey, id)
    await p.locator(`.seg-item[data-campaign="${id}"]`).click()
    await expect.poll(() => p.getByTestId('run-now').count(), { timeout: 15_000 }).toBe(1)
    await p.getByTestId('run-now').click()
    await expect.poll(() => p.getByTestId('run-status').textContent(), { timeout: 60_000 }).toMatch(/\d/)
    await expect.poll(() => p.getByTestId('variant-results').locator('tr[data-variant]').count(), { timeout: 30_000 }).toBe(2)
    const stats = await call<{ targeted: number; variants: { variant: string; targeted: number }[] }>('GET', `/v1/push/campaigns/${id}/stats`)
    expect(stats.json.variants.map((v) => v.variant)).toEqual(['A', 'B'])
    expect(stats.json.variants.reduce((a, v) => a + v.targeted, 0)).toBe(stats.json.targeted)
    const rowA = (await p.getByTestId('variant-results').locator('tr[data-variant="A"]').textContent())!
    expect(rowA).toContain('60%')
    expect(rowA).toContain('基准')
    // The targets list names each customer's variant (a dash for control and holdout, who get none).
    await expect.poll(() => p.getByTestId('target-variant').count(), { timeout: 30_000 }).toBeGreaterThan(0)
    const shown = new Set(await p.getByTestId('target-variant').allTextContents())
    expect([...shown].every((v) => ['A', 'B', '—'].includes(v))).toBe(true)
    expect([...shown].some((v) => v === 'A' || v === 'B')).toBe(true)
    await p.getByTestId('variant-results').scrollIntoViewIfNeeded()
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'results per variant')
    await shot(p, `ab-results-${size.name}`)
    expect(problems).toEqual([])
  })
})
