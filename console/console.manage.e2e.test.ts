import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { englishLeft, expectFits } from './e2e.checks.js'
import { apiCaller, CHROMIUM, shot, signedInPage, SIZES, startDemoConsole, type DemoConsole, type SizeName } from './e2e.setup.js'

/**
 * Issue 21, missing items 4 to 7, in Chinese at a desktop's 1440×900 and a phone's 390×844:
 * duplicate, save as, archive and search for segments and campaigns; who changed what with a
 * diff between versions and the rule editor's unsaved marker and undo; tag definitions and
 * schedules as sentences; the layout preview of an unknown customer and the personalization
 * switch. Each screen is checked for English left and for page errors.
 */

describe('the console manages what it made, says who changed what, and reads definitions out, on a desktop and a phone', () => {
  let demo: DemoConsole
  let browser: Browser | undefined
  const pages: Partial<Record<SizeName, Page>> = {}
  const problems: string[] = []

  const call = apiCaller(() => demo)
  const route = async (p: Page, r: string) => {
    await p.getByTestId(`nav-${r}`).click()
    await expect.poll(() => p.getByTestId(`view-${r}`).locator('.panel').count(), { timeout: 10_000 }).toBeGreaterThan(0)
  }

  beforeAll(async () => {
    demo = await startDemoConsole()
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    for (const s of SIZES) {
      const p = await signedInPage(browser, demo.server.url, demo.adminKey, s, problems)
      pages[s.name] = p
    }
  }, 420_000)

  afterAll(async () => {
    await browser?.close()
    await demo?.close()
  })

  it.each(SIZES)('4: segments and campaigns are searched, duplicated, saved as, and archived (refused while used) at $width×$height', async (size) => {
    const p = pages[size.name]!
    const sfx = size.name[0]
    const seg = `e2e-elders-${sfx}`
    const camp = `e2e-elder-care-${sfx}`
    expect((await call('PUT', `/v1/segments/${seg}`, { name: `长辈客群 ${sfx}`, purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true } })).status).toBe(201)
    const campaign = { name: `长辈关怀 ${sfx}`, purpose: 'marketing', audience: { segment: seg }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '您好', en: 'Hello' } } }
    expect((await call('PUT', `/v1/push/campaigns/${camp}`, campaign)).status).toBe(201)

    await route(p, 'segments')
    await p.getByTestId('seg-search').fill(seg)
    await expect.poll(() => p.locator('.seg-item').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.segment)), { timeout: 10_000 }).toEqual([seg])
    await p.locator(`.seg-item[data-segment="${seg}"]`).click()
    await expect.poll(() => p.getByTestId('seg-archive').count(), { timeout: 10_000 }).toBe(1)

    // Archiving a segment a campaign uses is refused, naming the campaign.
    await p.getByTestId('seg-archive').click()
    await expect.poll(() => p.getByTestId('in-use-user').allTextContents(), { timeout: 10_000 }).toEqual([expect.stringContaining(camp)])
    expect(await p.getByTestId('save-status').textContent()).toContain('仍有 1 处在使用')
    expect(await englishLeft(p)).toEqual([])
    await shot(p, `21-segment-in-use-${size.name}`)

    // Duplicate: a copy saved at once under a free id, opened.
    await p.getByTestId('seg-duplicate').click()
    await expect.poll(() => p.getByTestId('save-status').textContent(), { timeout: 15_000 }).toContain(`${seg}-copy`)
    const copy = await call<{ name: string; rule: unknown; changeNote: string }>('GET', `/v1/segments/${seg}-copy`)
    expect(copy.json).toMatchObject({ name: `长辈客群 ${sfx}（副本）`, rule: { tag: 'elder', op: 'eq', value: true }, changeNote: `复制自 ${seg} v1` })

    // The copy, used by nothing, is archived: out of the list, shown by the filter, restored.
    await p.getByTestId('seg-archive').click()
    await expect.poll(() => p.getByTestId('archived-note').count(), { timeout: 10_000 }).toBe(1)
    expect(await p.getByTestId('save').isDisabled()).toBe(true)
    await expect.poll(() => p.locator(`.seg-item[data-segment="${seg}-copy"]`).count(), { timeout: 10_000 }).toBe(0)
    await p.getByTestId('seg-archived-filter').selectOption('only')
    await expect.poll(() => p.locator(`.seg-item[data-segment="${seg}-copy"]`).count(), { timeout: 10_000 }).toBe(1)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'segments, archived')
    await shot(p, `21-segment-archived-${size.name}`)
    await p.getByTestId('seg-archive').click()
    await expect.poll(() => p.getByTestId('archived-note').count(), { timeout: 10_000 }).toBe(0)
    await p.getByTestId('seg-archived-filter').selectOption('exclude')

    // Save as: the editor's rule becomes a new segment to name.
    await p.getByTestId('seg-save-as').click()
    expect(await p.getByTestId('seg-id').isDisabled()).toBe(false)
    await p.getByTestId('seg-id').fill(`${seg}-saved-as`)
    await p.getByTestId('save').click()
    await expect.poll(() => p.getByTestId('save-status').textContent(), { timeout: 15_000 }).toMatch(/1$/)
    expect((await call('GET', `/v1/segments/${seg}-saved-as`)).status).toBe(200)

    // Campaigns: searched, duplicated paused, the copy archived (it never runs), restored paused.
    await route(p, 'campaigns')
    await p.getByTestId('campaign-search').fill(`care-${sfx}`)
    await expect.poll(() => p.locator('.seg-item').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.campaign)), { timeout: 10_000 }).toEqual([camp])
    await p.locator(`.seg-item[data-campaign="${camp}"]`).click()
    await p.getByTestId('campaign-duplicate').click()
    await expect.poll(() => p.getByTestId('campaign-status').textContent(), { timeout: 15_000 }).toContain(`${camp}-copy`)
    expect((await call<{ status: string }>('GET', `/v1/push/campaigns/${camp}-copy`)).json.status).toBe('paused')
    await p.getByTestId('campaign-archive').click()
    await expect.poll(() => p.getByTestId('archived-note').count(), { timeout: 10_000 }).toBe(1)
    expect(await p.getByTestId('save-campaign').isDisabled()).toBe(true)
    expect(await p.getByTestId('c-status').inputValue()).toBe('archived')
    // Run now on an archived campaign makes nothing, and says why.
    await p.getByTestId('run-now').click()
    await expect.poll(() => p.getByTestId('run-status').textContent(), { timeout: 20_000 }).toContain('已归档')
    const ran = await call<{ campaigns: { skipped?: string }[] }>('POST', `/v1/push/campaigns/${camp}-copy/run`, {})
    expect(ran.json.campaigns[0]!.skipped).toBe('archived')
    await p.getByTestId('campaign-archived-filter').selectOption('only')
    await expect.poll(() => p.locator(`.seg-item[data-campaign="${camp}-copy"]`).count(), { timeout: 10_000 }).toBe(1)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'campaigns, archived')
    await shot(p, `21-campaign-archived-${size.name}`)
    await p.getByTestId('campaign-archive').click()
    await expect.poll(() => p.getByTestId('campaign-status').textContent(), { timeout: 10_000 }).toContain('暂停')
    expect((await call<{ status: string }>('GET', `/v1/push/campaigns/${camp}-copy`)).json.status).toBe('paused')
    await p.getByTestId('campaign-archived-filter').selectOption('exclude')
    await p.getByTestId('campaign-search').fill('')
    expect(problems).toEqual([])
  })

  it.each(SIZES)('5: who changed what, by holder, with a diff between versions; the rule editor marks unsaved changes and undoes them at $width×$height', async (size) => {
    const p = pages[size.name]!
    const sfx = size.name[0]
    const seg = `e2e-elders-${sfx}`
    const camp = `e2e-elder-care-${sfx}`
    const holder = (await call<{ versions: { createdBy: string }[] }>('GET', `/v1/segments/${seg}/versions`)).json.versions[0]!.createdBy
    expect(holder).not.toBe('')

    await route(p, 'segments')
    await p.getByTestId('seg-search').fill(seg)
    await p.locator(`.seg-item[data-segment="${seg}"]`).click()
    await expect.poll(() => p.getByTestId('unsaved').getAttribute('data-state'), { timeout: 10_000 }).toBe('saved')
    expect(await p.getByTestId('undo').isDisabled()).toBe(true)
    // A condition added: unsaved, and undone.
    await p.getByTestId('add-tag').first().click()
    await expect.poll(() => p.getByTestId('unsaved').getAttribute('data-state'), { timeout: 10_000 }).toBe('unsaved')
    expect(await p.getByTestId('rule-tree').locator('.node[data-kind="tag"]').count()).toBe(2)
    expect(await englishLeft(p)).toEqual([])
    await shot(p, `22-rule-unsaved-${size.name}`)
    await p.getByTestId('undo').click()
    await expect.poll(() => p.getByTestId('rule-tree').locator('.node[data-kind="tag"]').count(), { timeout: 10_000 }).toBe(1)
    expect(await p.getByTestId('unsaved').getAttribute('data-state')).toBe('saved')

    // A change saved: the history names the holder, and the diff says what changed.
    await p.getByTestId('seg-purpose').selectOption('service')
    await expect.poll(() => p.getByTestId('unsaved').getAttribute('data-state'), { timeout: 10_000 }).toBe('unsaved')
    await p.getByTestId('save').click()
    await expect.poll(() => p.getByTestId('save-status').textContent(), { timeout: 15_000 }).toMatch(/2$/)
    expect(await p.getByTestId('unsaved').getAttribute('data-state')).toBe('saved')
    const history = p.getByTestId('history')
    expect(await history.getByTestId('version-holder').allTextContents()).toEqual([holder, holder])
    await expect.poll(() => history.getByTestId('diff-change').evaluateAll((els) => els.map((e) => `${(e as HTMLElement).dataset.kind} ${(e as HTMLElement).dataset.path}`)), { timeout: 10_000 }).toEqual(['changed purpose'])
    expect(await history.getByTestId('diff-change').textContent()).toContain('修改')
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'segment history')
    await shot(p, `22-segment-history-${size.name}`)

    // A campaign's history: the copy made, archived and restored (paused) in item 4.
    await route(p, 'campaigns')
    await p.getByTestId('campaign-search').fill(`${camp}-copy`)
    await p.locator(`.seg-item[data-campaign="${camp}-copy"]`).click()
    const ch = p.getByTestId('campaign-history')
    await expect.poll(() => ch.count(), { timeout: 10_000 }).toBe(1)
    await ch.locator('summary').click()
    expect(await ch.getByTestId('version-holder').allTextContents()).toEqual([holder, holder, holder])
    expect(await ch.getByTestId('diff-change').evaluateAll((els) => els.map((e) => `${(e as HTMLElement).dataset.path}`))).toEqual(['status'])
    await ch.getByTestId('diff-from').selectOption('1')
    await expect.poll(() => ch.getByTestId('diff-none').count(), { timeout: 10_000 }).toBe(1)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'campaign history')
    await shot(p, `22-campaign-history-${size.name}`)
    await p.getByTestId('campaign-search').fill('')

    // A tag's and the catalogue's history, by holder.
    await route(p, 'tags')
    await p.locator('tr[data-tag="elder"]').click()
    const th = p.getByTestId('tag-history')
    await expect.poll(() => th.count(), { timeout: 10_000 }).toBe(1)
    await th.locator('summary').click()
    expect((await th.getByTestId('version-holder').allTextContents()).length).toBeGreaterThan(0)
    expect(await englishLeft(p)).toEqual([])
    await route(p, 'layout')
    await expect.poll(() => p.getByTestId('catalog-history-panel').locator('[data-testid="catalog-history"], [data-testid="catalog-none"]').count(), { timeout: 10_000 }).toBe(1)
    expect(await englishLeft(p)).toEqual([])
    expect(problems).toEqual([])
  })

  it.each(SIZES)('6: tag definitions and schedules read as sentences, not JSON or cron, at $width×$height', async (size) => {
    const p = pages[size.name]!
    const name = `e2e_signin_${size.name}`
    const def = {
      type: 'boolean', description: { zh: '常登录客户', en: 'Signs in often' }, owner: 'digital', purpose: ['service', 'marketing'], schedule: '0 9 * * *',
      rule: { kind: 'window', events: ['signed_in'], measure: 'count', days: 30, threshold: { op: 'gte', value: 3 } },
    }
    expect([200, 201]).toContain((await call('PUT', `/v1/tags/${name}`, def)).status)
    await p.reload()
    await expect.poll(() => p.getByTestId('tenant-name').textContent(), { timeout: 15_000 }).not.toBe('')
    await route(p, 'tags')
    await p.getByTestId('tag-search').fill(name)
    await p.locator(`tr[data-tag="${name}"]`).click()
    await expect.poll(() => p.getByTestId('definition-sentence').textContent(), { timeout: 10_000 }).toBe('近30天登录≥3次')
    const facts = await p.getByTestId('tag-detail').locator('dl.facts').textContent()
    expect(facts).toContain('每天 09:00')
    expect(facts).not.toMatch(/\d \* \* \*/)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'tag sentence')
    await shot(p, `23-tag-sentence-${size.name}`)
    // A banking-pack rule over a tag and a profile fact, and a category's cases.
    await p.getByTestId('tag-search').fill('')
    await p.locator('tr[data-tag="elder"]').click()
    await expect.poll(() => p.getByTestId('definition-sentence').textContent(), { timeout: 10_000 }).toBe('年龄（周岁） ≥ 60，或选择了长辈版')
    await p.locator('tr[data-tag="aum_tier"]').click()
    await expect.poll(() => p.getByTestId('definition-sentence').textContent(), { timeout: 10_000 }).toMatch(/^AUM（元） ≥ 6,000,000 时为 私人银行；/)
    expect(await englishLeft(p)).toEqual([])

    // Schedules: the campaign form says its cron as a sentence as it is typed; pipelines show none raw.
    await route(p, 'campaigns')
    await p.getByTestId('new-campaign').click()
    await p.getByTestId('c-cron').fill('30 9 * * 1-5')
    await expect.poll(() => p.getByTestId('cron-sentence').textContent(), { timeout: 10_000 }).toBe('工作日 09:30')
    await route(p, 'pipelines')
    await p.waitForTimeout(500)
    expect(await p.getByTestId('view-pipelines').textContent()).not.toMatch(/\d \* \* \*/)
    expect(await englishLeft(p)).toEqual([])
    expect(problems).toEqual([])
  })

  it.each(SIZES)('7: the layout preview says plainly when a customer is unknown, and shows the personalization switch, at $width×$height', async (size) => {
    const p = pages[size.name]!
    await route(p, 'layout')
    await p.getByTestId('layout-customer').fill('99999999999999')
    await p.getByTestId('layout-show').click()
    await expect.poll(() => p.getByTestId('unknown-customer').textContent(), { timeout: 10_000 }).toContain('99999999999999')
    expect(await p.getByTestId('unknown-customer').textContent()).toContain('本行没有客户号')
    expect(await p.getByTestId('personalization-switch').count()).toBe(0)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'unknown customer')
    await shot(p, `24-layout-unknown-${size.name}`)

    // Two customers of the bank: one turned personalization off in the app, one did not.
    const { sample } = (await call<{ sample: string[] }>('POST', '/v1/segments/preview', { purpose: 'service', rule: { tag: 'lifecycle', op: 'exists' }, sampleSize: 20 })).json
    const [off, on] = size.name === 'desktop' ? [sample[0]!, sample[1]!] : [sample[2]!, sample[3]!]
    const put = await call('PUT', `/v1/customers/${off}/consents`, { purpose: 'personalization', granted: false, source: 'app', noticeVersion: 'v1', at: new Date().toISOString() })
    expect(put.status).toBeLessThan(300)
    await p.getByTestId('layout-customer').fill(off)
    await p.getByTestId('layout-show').click()
    await expect.poll(() => p.getByTestId('personalization-switch').getAttribute('data-state'), { timeout: 10_000 }).toBe('off')
    expect(await p.getByTestId('personalization-switch').textContent()).toContain('已关闭')
    expect(await p.getByTestId('unknown-customer').count()).toBe(0)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'switch off')
    await shot(p, `24-layout-switch-off-${size.name}`)
    await p.getByTestId('layout-customer').fill(on)
    await p.getByTestId('layout-show').click()
    await expect.poll(() => p.getByTestId('personalization-switch').getAttribute('data-state'), { timeout: 10_000 }).toBe('on')
    expect(await englishLeft(p)).toEqual([])
    expect(problems).toEqual([])
  })
})
