import fs from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { API_TYPES_FILE, generateApiTypes } from './api-types.js'

/** A route or schema changed without `npm run gen:api-types` leaves the console's types behind. */
describe('console/src/api.gen.ts', () => {
  it('is what the generator makes from the routes as they are now', { timeout: 180_000 }, async () => {
    const want = await generateApiTypes()
    const have = await fs.readFile(API_TYPES_FILE, 'utf8')
    expect(want).toContain('"/v1/push/templates/preview"')
    // Compared as text, with the first differing line named, not a 10,000-line diff.
    const a = have.split('\n')
    const b = want.split('\n')
    const at = b.findIndex((line, i) => a[i] !== line)
    const first = at === -1 && a.length !== b.length ? Math.min(a.length, b.length) : at
    expect(first === -1 ? 'same' : `line ${first + 1}: checked in ${JSON.stringify(a[first])}, generated ${JSON.stringify(b[first])}; run npm run gen:api-types`).toBe('same')
  })
})
