import pino, { type Logger } from 'pino'

/**
 * Paths pino replaces with "[redacted]": credentials and the personal fields named in the
 * data-minimization rules, wherever they appear one or two levels deep in a log object.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'apiKey',
  'key',
  'password',
  'token',
  'secret',
  '*.apiKey',
  '*.key',
  '*.password',
  '*.token',
  '*.secret',
  ...['phone', 'mobile', 'email', 'idNumber', 'nationalId', 'id_number', 'cardNumber', 'card_number', 'address'].flatMap((f) => [
    f,
    `*.${f}`,
    `*.*.${f}`,
  ]),
  // Not `name` at the top level: that is the logger's own name.
  '*.name',
  '*.*.name',
]

export function createLogger(opts: { level: string; name?: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: opts.name ?? 'qianmian',
      level: opts.level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination,
  )
}

export type { Logger }
