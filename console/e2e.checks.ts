import type { Page } from 'playwright-core'
import { expect } from 'vitest'

/**
 * The check the Chinese screens share in the browser tests: a visible word of Latin letters must
 * be an identifier (inside `translate="no"`, or with a digit, `_`, `.` or `-`), an acronym (AUM,
 * CSV) or one of the few words the console means to show as they are.
 */

// The brand, the language switch, and statistical methods known by their authors' names.
export const ALLOWED = new Set(['Qianmian', 'English', 'Wilson', 'Newcombe'])

/** Visible words in Latin letters the Chinese screens should not show, with where they are. */
export function englishLeft(page: Page): Promise<string[]> {
  return page.evaluate((allowed) => {
    const out: string[] = []
    const flag = (text: string, where: string) => {
      for (const w of text.match(/[A-Za-z][A-Za-z0-9_.-]*/g) ?? []) {
        if (w.length < 2 || /[\d_.-]/.test(w) || /^[A-Z]{2,5}s?$/.test(w) || allowed.includes(w)) continue
        out.push(`${w} (${where}: "${text.trim().slice(0, 60)}")`)
      }
    }
    const shown = (el: Element) => !el.closest('[translate="no"]') && (el as HTMLElement).checkVisibility?.({ visibilityProperty: true } as CheckVisibilityOptions) !== false
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT)
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement
      if (!el || el.closest('select, script, style, [hidden], details:not([open]) > :not(summary)') || !shown(el)) continue
      flag(n.textContent ?? '', el.tagName.toLowerCase())
    }
    for (const s of document.querySelectorAll('select')) if (shown(s)) for (const o of s.options) flag(o.text, 'option')
    for (const i of document.querySelectorAll('input[placeholder], textarea[placeholder]')) if (shown(i)) flag(i.getAttribute('placeholder')!, 'placeholder')
    // Charts draw on a canvas: their labels are kept on the chart's element.
    for (const c of document.querySelectorAll<HTMLElement>('[data-labels]')) if (shown(c)) flag(c.dataset.labels!.replace(/\|/g, ' '), 'chart')
    return out
  }, [...ALLOWED])
}

/** Whether the page scrolls sideways or any of `selector` sticks out of the viewport's width. */
export function offScreen(page: Page, selector: string): Promise<{ sideways: number; out: string[] }> {
  return page.evaluate((sel) => {
    const w = window.innerWidth
    const out = [...document.querySelectorAll(sel)]
      .map((e) => [e, e.getBoundingClientRect()] as const)
      .filter(([, b]) => b.width > 0 && (b.left < -1 || b.right > w + 1))
      .map(([e, b]) => `${(e as HTMLElement).dataset.testid ?? e.className} ${Math.round(b.left)}–${Math.round(b.right)}`)
    return { sideways: document.documentElement.scrollWidth - w, out }
  }, selector)
}

/** Nothing of the panels or the language switch sticks out of the window, sideways or at all. */
export async function expectFits(page: Page, where: string): Promise<void> {
  const f = await offScreen(page, 'main .panel, [data-testid="lang-switch"]')
  expect(f.sideways, where).toBeLessThanOrEqual(0)
  expect(f.out, where).toEqual([])
}
