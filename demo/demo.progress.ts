import cliProgress from 'cli-progress'

/**
 * Progress of a demo generation on stderr. Work is counted in customer-units per phase
 * (profiles, stock tables, events) so the bar moves at a roughly even pace; the phase name
 * tells what is running. Without a terminal the bar is off and this is a no-op.
 */
export interface Progress {
  advance(units: number, phase: string): void
  phase(phase: string): void
  stop(): void
}

export function createProgress(enabled: boolean, total: number): Progress {
  if (!enabled) return { advance() {}, phase() {}, stop() {} }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'demo [{bar}] {percentage}% | {duration_formatted} | ETA {eta_formatted} | {phase}',
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  )
  bar.start(Math.max(1, total), 0, { phase: 'starting' })
  return {
    advance: (units, phase) => bar.increment(units, { phase }),
    phase: (phase) => bar.update({ phase }),
    stop: () => bar.stop(),
  }
}
