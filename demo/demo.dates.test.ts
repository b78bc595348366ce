import { describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { formatDate, formatDateTime, sameDayYearsAgo } from './demo.dates.js'

describe('demo dates', () => {
  it('formats like Date#toISOString and chDateTime, across leap years and centuries', () => {
    const samples = [Date.UTC(1900, 1, 28), Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(1970, 0, 1), Date.UTC(1969, 11, 31, 12, 0, 0, 7)]
    for (let i = 0; i < 20_000; i++) samples.push(Date.UTC(1920, 0, 1) + Math.floor(((i * 2_654_435_761) % 4_294_967_296) / 4_294_967_296 * 130 * 365.25 * 86_400_000))
    for (const ms of samples) {
      expect(formatDate(ms)).toBe(new Date(ms).toISOString().slice(0, 10))
      expect(formatDateTime(ms)).toBe(chDateTime(ms))
    }
  })

  it('finds the same day years ago, 29 February falling back to the 28th', () => {
    expect(sameDayYearsAgo(2025, 6, 15, 60)).toBe(Date.UTC(1965, 5, 15))
    expect(sameDayYearsAgo(2024, 2, 29, 1)).toBe(Date.UTC(2023, 1, 28))
    expect(sameDayYearsAgo(2024, 2, 29, 4)).toBe(Date.UTC(2020, 1, 29))
  })
})
