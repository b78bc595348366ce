import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

type LogMethod = (...args: unknown[]) => void
type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/**
 * A request's logger, made on its first use. fastify makes a pino child (bindings: the request
 * id) for every request; with the redaction paths the logger has, that child cost about 7% of a
 * layout request's CPU (profiled under load), and request logging is off, so most requests never
 * log a line. The child is made with the same bindings and options when the request first logs,
 * so its lines are those the child would have written.
 */
class LazyRequestLogger {
  #real: FastifyBaseLogger | undefined
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #opts: ChildLoggerOptions

  constructor(parent: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#opts = opts
  }

  get #logger(): FastifyBaseLogger {
    return (this.#real ??= this.#parent.child(this.#bindings, this.#opts))
  }

  #call(level: Level, args: unknown[]): void {
    ;(this.#logger[level] as LogMethod).apply(this.#logger, args)
  }

  get level(): string {
    return this.#real?.level ?? this.#opts.level ?? this.#parent.level
  }

  set level(level: string) {
    this.#logger.level = level
  }

  fatal(...args: unknown[]): void {
    this.#call('fatal', args)
  }
  error(...args: unknown[]): void {
    this.#call('error', args)
  }
  warn(...args: unknown[]): void {
    this.#call('warn', args)
  }
  info(...args: unknown[]): void {
    this.#call('info', args)
  }
  debug(...args: unknown[]): void {
    this.#call('debug', args)
  }
  trace(...args: unknown[]): void {
    this.#call('trace', args)
  }
  silent(...args: unknown[]): void {
    this.#call('silent', args)
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger.child(bindings, options)
  }
}

/** fastify's `childLoggerFactory`: each request's logger is a LazyRequestLogger. */
export const lazyRequestLogger = (logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger =>
  new LazyRequestLogger(logger, bindings, opts) as unknown as FastifyBaseLogger
