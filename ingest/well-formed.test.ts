import { describe, expect, it } from 'vitest'
import { cutText, storableText, wellFormed } from './well-formed.js'

describe('text UTF-8 can carry', () => {
  it('repairs each unpaired surrogate to U+FFFD and leaves pairs and other text as they are', () => {
    expect(wellFormed('a\ud83db')).toBe('a\ufffdb')
    expect(wellFormed('\udc00\ud800')).toBe('\ufffd\ufffd')
    expect(wellFormed('😀 中文 ok')).toBe('😀 中文 ok')
    const plain = 'x'.repeat(1000)
    expect(wellFormed(plain)).toBe(plain)
  })

  it('cuts between characters: never between the two halves of an emoji', () => {
    expect(cutText(`${'a'.repeat(999)}😀`, 1000)).toBe('a'.repeat(999))
    expect(cutText(`${'a'.repeat(998)}😀b`, 1000)).toBe(`${'a'.repeat(998)}😀`)
    expect(cutText('short', 1000)).toBe('short')
    expect(storableText(`${'a'.repeat(998)}\ud83dxyz`, 1000)).toBe(`${'a'.repeat(998)}\ufffdx`)
  })
})
