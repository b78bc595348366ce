import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { englishLeft, expectFits } from './e2e.checks.js'
import { apiCaller, CHROMIUM, shot, signedInPage, SIZES, startDemoConsole, type DemoConsole, type SizeName } from './e2e.setup.js'

/**
 * Issue 21, missing item 2, in Chinese at a desktop's 1440×900 and a phone's 390×844: a
 * marketing campaign's approval (asked for by its author, refused to the author, given by a
 * second holder, lost again by a change) and a test send to a test list, pulled by the
 * notification service marked as a test. Each screen is checked for English left and page errors.
 */

describe('the console asks for and gives approval, and sends a test, on a desktop and a phone', () => {
  let demo: DemoConsole
  let browser: Browser | undefined
  let secondKey = ''
  let sample: string[] = []
  const pages: Partial<Record<SizeName, Page>> = {}
  const problems: string[] = []

  const call = apiCaller(() => demo)
  const status = (p: Page) => p.getByTestId('approval-status').getAttribute('data-status')
  const openCampaign = async (p: Page, id: string) => {
    await p.getByTestId('nav-campaigns').click()
    await expect.poll(() => p.locator(`.seg-item[data-campaign="${id}"]`).count(), { timeout: 15_000 }).toBe(1)
    await p.locator(`.seg-item[data-campaign="${id}"]`).click()
    await expect.poll(() => p.getByTestId('approval-status').count(), { timeout: 15_000 }).toBe(1)
  }

  beforeAll(async () => {
    demo = await startDemoConsole()
    // A second person with the permission: a marketer of the same bank.
    const issued = await call<{ key: string }>('POST', '/v1/keys', { roles: ['marketer'], holder: '王芳' })
    expect(issued.status).toBe(201)
    secondKey = issued.json.key
    const preview = await call<{ sample: string[] }>('POST', '/v1/segments/preview', { purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true }, sampleSize: 3 })
    sample = preview.json.sample
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

  it.each(SIZES)('2: approval is asked for, refused to the author, given by a second holder, and lost by a change at $width×$height', async (size) => {
    const p = pages[size.name]!
    const id = `e2e-approve-${size.name[0]}`
    const body = { name: `重阳理财 ${size.name[0]}`, purpose: 'marketing', schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '{{name}}您好，重阳节快乐。', en: 'Hello {{name}}' } } }
    expect((await call('PUT', `/v1/push/campaigns/${id}`, body)).status).toBe(201)
    await openCampaign(p, id)
    expect(await status(p)).toBe('draft')
    await p.getByTestId('approval-request').click()
    await expect.poll(() => status(p), { timeout: 10_000 }).toBe('requested')
    // The author cannot approve: said in Chinese, and the state stays.
    await p.getByTestId('approval-approve').click()
    await expect.poll(() => p.getByTestId('approval-note').textContent(), { timeout: 10_000 }).toContain('不能自己批准')
    expect(await status(p)).toBe('requested')
    // Run now is refused until approved, in Chinese.
    await p.getByTestId('run-now').click()
    await expect.poll(() => p.getByTestId('run-status').textContent(), { timeout: 20_000 }).toContain('尚未批准')
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'approval requested')
    await shot(p, `21-approval-requested-${size.name}`)

    expect((await call<{ status: string }>('POST', `/v1/push/campaigns/${id}/approval`, { version: 1, note: '同意' }, secondKey)).json.status).toBe('approved')
    await openCampaign(p, id)
    expect(await status(p)).toBe('approved')
    expect(await p.getByTestId('approval-panel').textContent()).toContain('王芳')
    expect(await englishLeft(p)).toEqual([])
    await shot(p, `21-approval-approved-${size.name}`)

    // A change after approval needs approval again.
    expect((await call('PUT', `/v1/push/campaigns/${id}`, { ...body, name: `${body.name}（改）` })).status).toBe(200)
    await openCampaign(p, id)
    expect(await status(p)).toBe('draft')
    expect(problems).toEqual([])
  })

  it.each(SIZES)('2: a test send goes to the test list, is pulled marked as a test and counts nowhere at $width×$height', async (size) => {
    const p = pages[size.name]!
    const id = `e2e-approve-${size.name[0]}`
    await openCampaign(p, id)
    await p.getByTestId('test-list-editor').locator('summary').click()
    await p.getByTestId('test-list-id').fill(`staff-${size.name[0]}`)
    await p.getByTestId('test-list-members').fill(sample.map((no, i) => `${no}, 测试机${i + 1}`).join('\n'))
    await p.getByTestId('test-list-save').click()
    await expect.poll(() => p.getByTestId('test-list').locator('option').count(), { timeout: 10_000 }).toBeGreaterThan(0)
    await p.getByTestId('test-list').selectOption(`staff-${size.name[0]}`)
    await p.getByTestId('test-send').click()
    await expect.poll(() => p.getByTestId('test-sent').count(), { timeout: 20_000 }).toBe(1)
    const said = (await p.getByTestId('test-sent').textContent())!
    const [sent, left] = [...said.matchAll(/\d+/g)].map((m) => Number(m[0]))
    expect(sent! + left!).toBe(sample.length)
    expect(await p.getByTestId('test-left-out').count()).toBe(left)
    expect(await englishLeft(p)).toEqual([])
    await expectFits(p, 'test send')
    await shot(p, `21-test-send-${size.name}`)

    // The notification service pulls the tests marked as such; the campaign's stats count none.
    const pulled = await call<{ targets: { campaignId: string; test: boolean }[] }>('POST', '/v1/push/pull', { limit: 10_000, leaseSeconds: 60 })
    expect(pulled.json.targets.filter((x) => x.campaignId === id && x.test)).toHaveLength(sent!)
    expect(pulled.json.targets.filter((x) => x.campaignId === id && !x.test)).toHaveLength(0)
    expect((await call<{ targeted: number; sent: number }>('GET', `/v1/push/campaigns/${id}/stats`)).json).toMatchObject({ targeted: 0, sent: 0 })
    expect(problems).toEqual([])
  })
})
