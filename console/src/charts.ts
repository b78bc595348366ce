import { BarChart, LineChart, PieChart } from 'echarts/charts'
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components'
import * as echarts from 'echarts/core'
import { CanvasRenderer } from 'echarts/renderers'

/**
 * Charts through ECharts' modular build: only bar, line and pie with a grid, legend and
 * tooltip are bundled. Charts of a screen are tracked so that leaving the screen frees them.
 */

echarts.use([BarChart, LineChart, PieChart, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer])

export const PALETTE = ['#1f6f5c', '#d98e04', '#3b6ea8', '#b4463c', '#7a5ea8', '#4f9a94', '#a0a43a', '#c76b98', '#5a6472']
const live = new Set<echarts.ECharts>()

/**
 * Charts draw on a canvas: the words and numbers they show are also kept on their element
 * (`data-labels`, `data-values`, `|`-separated), for the browser test's checks of the language.
 */
function label(el: HTMLElement, labels: string[], values: unknown[]) {
  el.dataset.labels = labels.join('|')
  el.dataset.values = values.map((v) => (typeof v === 'object' && v !== null ? (v as { value: number }).value : v)).join('|')
}

function mount(el: HTMLElement, option: echarts.EChartsCoreOption): echarts.ECharts {
  // Panels that redraw (the live count) replace their chart elements: free the charts left behind.
  for (const c of live) {
    if (!c.getDom().isConnected) {
      c.dispose()
      live.delete(c)
    }
  }
  const chart = echarts.getInstanceByDom(el) ?? echarts.init(el)
  live.add(chart)
  chart.setOption({ color: PALETTE, animationDuration: 300, textStyle: { fontFamily: 'inherit' }, ...option }, { notMerge: true })
  return chart
}

export function disposeCharts(): void {
  for (const c of live) c.dispose()
  live.clear()
}

window.addEventListener('resize', () => {
  for (const c of live) c.resize()
})

export interface Series {
  name: string
  data: (number | null | { value: number; itemStyle?: { color: string } })[]
  stack?: string
  color?: string
  /** In a line chart: bars for per-run counts beside the line of a level. */
  type?: 'bar' | 'line'
}

/** `integer`: counts, so no 0.5 ticks; `labels`: the value on each bar (for few, small bars). */
export function bar(el: HTMLElement, categories: string[], series: Series[], o: { horizontal?: boolean; percent?: boolean; integer?: boolean; labels?: boolean } = {}) {
  const cat = { type: 'category', data: categories, axisLabel: { interval: 0, hideOverlap: true, width: 110, overflow: 'truncate' } }
  const pct = (v: number) => `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`
  label(el, [...categories, ...(series.length > 1 ? series.map((s) => s.name) : [])], series[0]?.data ?? [])
  const val = { type: 'value', ...(o.integer ? { minInterval: 1 } : {}), ...(o.percent ? { axisLabel: { formatter: pct } } : {}) }
  return mount(el, {
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    legend: series.length > 1 ? { top: 0 } : { show: false },
    grid: { left: 8, right: 16, top: series.length > 1 ? 28 : 12, bottom: 8, containLabel: true },
    xAxis: o.horizontal ? val : cat,
    yAxis: o.horizontal ? { ...cat, inverse: true } : val,
    series: series.map((s) => ({
      type: 'bar',
      name: s.name,
      data: s.data,
      stack: s.stack,
      barMaxWidth: 36,
      ...(s.color ? { itemStyle: { color: s.color } } : {}),
      ...(o.labels ? { label: { show: true, position: o.horizontal ? 'right' : 'top', ...(o.percent ? { formatter: (p: { value: number }) => pct(p.value) } : {}) } } : {}),
    })),
  })
}

export function pie(el: HTMLElement, data: { name: string; value: number }[]) {
  label(el, data.map((d) => d.name), data.map((d) => d.value))
  return mount(el, {
    tooltip: { trigger: 'item', formatter: '{b}: {c} ({d}%)' },
    legend: { type: 'scroll', bottom: 0, formatter: (name: string) => `${name} ${data.find((d) => d.name === name)?.value.toLocaleString('en-US') ?? ''}` },
    series: [{ type: 'pie', radius: ['38%', '66%'], center: ['50%', '44%'], data, label: { show: false } }],
  })
}

export function line(el: HTMLElement, categories: string[], series: Series[], o: { area?: boolean } = {}) {
  label(el, [...categories, ...series.map((s) => s.name)], series[0]?.data ?? [])
  return mount(el, {
    tooltip: { trigger: 'axis' },
    legend: { top: 0 },
    grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
    xAxis: { type: 'category', data: categories, boundaryGap: series.some((s) => s.type === 'bar') },
    yAxis: { type: 'value', minInterval: 1 },
    series: series.map((s, i) =>
      s.type === 'bar'
        ? { type: 'bar', name: s.name, data: s.data, barMaxWidth: 16 }
        : { type: 'line', name: s.name, data: s.data, smooth: true, showSymbol: categories.length < 40, ...(o.area && i === 0 ? { areaStyle: { opacity: 0.15 } } : {}) },
    ),
  })
}
