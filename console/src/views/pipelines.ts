import { api, enc, get } from '../api.js'
import { PALETTE, bar, line } from '../charts.js'
import { clear, fmtTime, h, select } from '../dom.js'
import { describeCron, t, tOr } from '../i18n.js'
import { store } from '../store.js'
import type { PipelineRun, PipelineStatus, SegmentRun } from '../types.js'

/** Pipelines: each one's state and schedule, run durations and failures, and a segment's size over time. */

const STATUS_COLOR: Record<string, string> = { succeeded: PALETTE[0]!, partial: PALETTE[4]!, failed: PALETTE[3]!, running: PALETTE[2]!, skipped: PALETTE[8]! }
let segmentId = ''
// What the last "run now" gave; the screen is drawn again after a run and keeps it.
let note = ''

const pipe = (p: string) => tOr(`pipe_${p}`, p)
const outcome = (s: string) => tOr(`run_${s}`, s)
const seconds = (r: PipelineRun) => (r.finishedAt ? Math.max(0, (Date.parse(`${r.finishedAt.replace(' ', 'T')}Z`) - Date.parse(`${r.startedAt.replace(' ', 'T')}Z`)) / 1000) : null)

export async function pipelinesView(root: HTMLElement): Promise<void> {
  const tz = store.tenant().timeZone
  const [{ pipelines }, { runs }, segments] = await Promise.all([
    get<{ pipelines: PipelineStatus[] }>('/v1/pipelines/status'),
    get<{ runs: PipelineRun[] }>('/v1/pipelines/runs?limit=200'),
    store.segments(),
  ])
  const durations = h('div', { class: 'chart', 'data-testid': 'durations-chart' })
  const outcomes = h('div', { class: 'chart small', 'data-testid': 'outcomes-chart' })
  const sizeChart = h('div', { class: 'chart', 'data-testid': 'segment-size-chart' })
  const sizeNote = h('p', { class: 'muted small' })
  const runStatus = h('p', { class: 'status', 'data-testid': 'run-status' }, note)
  // A partial tag run (some tags failed, the rest committed) is listed with the failures: its error names them.
  const failures = runs.filter((r) => r.status === 'failed' || r.status === 'partial')
  segmentId ||= segments[0]?.id ?? ''

  const runNow = (pipeline: string) => async () => {
    runStatus.textContent = `${pipe(pipeline)}: ${t('running')}`
    try {
      const r = await api<PipelineRun>('POST', '/v1/pipelines/runs', { pipeline, wait: true })
      note = `${pipe(pipeline)}: ${outcome(r.status)}${r.error ? ` (${r.error})` : ''}`
      await pipelinesView(root)
    } catch (e) {
      runStatus.textContent = (e as Error).message
    }
  }

  async function drawSize() {
    if (!segmentId) return void (sizeNote.textContent = t('noSegments'))
    const { runs: sr } = await get<{ runs: SegmentRun[] }>(`/v1/segments/${enc(segmentId)}/runs?limit=200`)
    const ordered = [...sr].reverse()
    sizeNote.textContent = ordered.length ? '' : t('notMaterialized')
    sizeChart.hidden = !ordered.length
    if (ordered.length) {
      line(sizeChart, ordered.map((r) => fmtTime(r.finishedAt, tz)), [
        { name: t('size'), data: ordered.map((r) => r.size) },
        { name: t('entered'), data: ordered.map((r) => r.entered), type: 'bar' },
        { name: t('exited'), data: ordered.map((r) => r.exited), type: 'bar' },
      ], { area: true })
    }
  }

  clear(
    root,
    h(
      'div',
      { class: 'cards' },
      pipelines.map((p) =>
        h(
          'div',
          { class: 'panel card', 'data-pipeline': p.pipeline },
          h('h3', null, pipe(p.pipeline), p.running ? h('span', { class: 'badge' }, t('runningNow')) : null),
          h('p', { class: 'small' }, `${t('lastRun')}: `, p.lastRun ? h('span', { class: `st st-${p.lastRun.status}` }, `${outcome(p.lastRun.status)} · ${fmtTime(p.lastRun.startedAt, tz)} · ${seconds(p.lastRun)?.toFixed(1) ?? '…'} ${t('seconds')}`) : t('never')),
          h('p', { class: 'small' }, `${t('lastSuccess')}: ${p.lastSuccess ? fmtTime(p.lastSuccess.startedAt, tz) : t('never')}`),
          h('p', { class: 'small muted' }, p.schedules.length ? `${t('schedules')}: ${[...new Set(p.schedules.map((s) => describeCron(s.cron) ?? s.cron))].join(' · ')} → ${fmtTime(p.schedules.map((s) => s.next).filter(Boolean).sort()[0], tz)}` : t('noSchedule')),
          p.pipeline === 'tags' || p.pipeline === 'segments' ? h('button', { onclick: runNow(p.pipeline) }, t('runNow')) : null,
        ),
      ),
    ),
    runStatus,
    h('div', { class: 'two-col' }, h('div', { class: 'panel' }, h('h3', null, t('runDurations')), durations), h('div', { class: 'panel' }, h('h3', null, t('runOutcomes')), outcomes)),
    h(
      'div',
      { class: 'panel' },
      h('h3', null, t('failures'), ` (${failures.length})`),
      failures.length
        ? h('table', { class: 'small' }, h('tr', null, [t('pipeline'), t('when'), t('attempt'), t('error')].map((x) => h('th', null, x))), failures.slice(0, 20).map((r) => h('tr', null, h('td', null, pipe(r.pipeline)), h('td', null, fmtTime(r.startedAt, tz, { year: true })), h('td', null, r.attempt), h('td', { class: 'issue', translate: 'no' }, r.error))))
        : h('p', { class: 'muted' }, t('noFailures')),
    ),
    h(
      'div',
      { class: 'panel' },
      h('h3', null, t('segmentSize')),
      segments.length ? select({ 'data-testid': 'size-segment', onchange: (e: Event) => ((segmentId = (e.target as HTMLSelectElement).value), void drawSize()) }, segments.map((s): [string, string] => [s.id, `${s.name} (${s.id})`]), segmentId) : null,
      sizeNote,
      sizeChart,
    ),
  )
  requestAnimationFrame(() => {
    const ordered = [...runs].reverse().slice(-60)
    bar(durations, ordered.map((r) => `${pipe(r.pipeline)} ${fmtTime(r.startedAt, tz)}`), [
      { name: t('seconds'), data: ordered.map((r) => ({ value: seconds(r) ?? 0, itemStyle: { color: STATUS_COLOR[r.status] ?? PALETTE[8]! } })) },
    ])
    const names = [...new Set(runs.map((r) => r.pipeline))]
    bar(outcomes, names.map(pipe), (['succeeded', 'partial', 'failed', 'skipped', 'running'] as const).map((st) => ({ name: outcome(st), stack: 'n', color: STATUS_COLOR[st]!, data: names.map((n) => runs.filter((r) => r.pipeline === n && r.status === st).length) })), { integer: true })
  })
  await drawSize()
}
