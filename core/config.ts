import os from 'node:os'
import path from 'node:path'
import { z } from 'zod'
import type { Lane, LaneLimits } from './lanes.js'
import { timeZoneSchema } from './time.js'

/**
 * The whole process configuration, read from the environment once at start-up.
 * Nothing else in the code base reads `process.env`: components receive the frozen
 * object (or the part of it they need) from the composition root.
 */

const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes')

const int = (def: number, min: number, max: number) =>
  z.coerce
    .number({ message: `expected an integer between ${min} and ${max}` })
    .int({ message: `expected an integer between ${min} and ${max}` })
    .min(min, { message: `expected an integer between ${min} and ${max}` })
    .max(max, { message: `expected an integer between ${min} and ${max}` })
    .default(def)

const identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, { message: 'expected a ClickHouse identifier (letters, digits, _)' })

const timeZone = timeZoneSchema

export const configSchema = z.object({
  PORT: int(8080, 0, 65535),
  HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  QIANMIAN_DATA_DIR: z.string().min(1).default('.qianmian'),
  CLICKHOUSE_URL: z.url({ message: 'expected an http(s) URL such as http://clickhouse:8123' }).optional(),
  CLICKHOUSE_USER: z.string().default('default'),
  CLICKHOUSE_PASSWORD: z.string().default(''),
  CLICKHOUSE_DATABASE: identifier.default('qianmian'),
  CLICKHOUSE_REQUEST_TIMEOUT_MS: int(300_000, 1_000, 3_600_000),
  QIANMIAN_DEMO: z.enum(['auto', 'true', 'false'], { message: 'expected auto, true or false' }).default('auto'),
  QIANMIAN_DEMO_CUSTOMERS: int(20_000, 10, 20_000_000),
  QIANMIAN_DEMO_DAYS: int(30, 1, 400),
  QIANMIAN_DEMO_SEED: int(42, 0, 2 ** 31 - 1),
  QIANMIAN_DEFAULT_TIMEZONE: timeZone.default('Asia/Shanghai'),
  QIANMIAN_OPERATOR_TOKEN: z
    .string()
    .min(32, { message: 'expected at least 32 characters (a random secret)' })
    .optional(),
  QIANMIAN_PII_SECRET: z
    .string()
    .min(32, { message: 'expected at least 32 characters (a random secret)' })
    .optional(),
  QIANMIAN_KEY_CACHE_TTL_MS: int(30_000, 0, 3_600_000),
  SHUTDOWN_TIMEOUT_MS: int(10_000, 100, 600_000),
  QIANMIAN_API_PROCESSES: int(1, 1, 64),
  LAYOUT_EXPOSURE_FLUSH_MS: int(5_000, 100, 60_000),
  QIANMIAN_ROLES: z
    .string()
    .regex(/^(all|api|ingest-worker|scheduler)(,(api|ingest-worker|scheduler))*$/, {
      message: 'expected all, or a comma-separated list of api, ingest-worker, scheduler',
    })
    .default('all'),
  KAFKA_BROKERS: z
    .string()
    .regex(/^[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*$/, { message: 'expected host:port[,host:port...]' })
    .optional(),
  KAFKA_CLIENT_ID: z.string().min(1).default('qianmian'),
  KAFKA_TOPIC: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, { message: 'expected a Kafka topic name' }).default('qianmian.events'),
  KAFKA_DLQ_TOPIC: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, { message: 'expected a Kafka topic name' }).default('qianmian.events.dlq'),
  KAFKA_GROUP_ID: z.string().min(1).default('qianmian-ingest'),
  KAFKA_PARTITIONS: int(6, 1, 10_000),
  KAFKA_REPLICATION_FACTOR: int(-1, -1, 10),
  KAFKA_SEND_TIMEOUT_MS: int(5_000, 100, 120_000),
  // The broker's default message.max.bytes. At least 512 KiB: the largest event the route accepts
  // encodes to about 350 KB (kafka/send-limits.ts).
  KAFKA_MAX_MESSAGE_BYTES: int(1_048_588, 524_288, 104_857_600),
  INGEST_FLUSH_ROWS: int(20_000, 1, 1_000_000),
  INGEST_FLUSH_MS: int(200, 1, 5_000),
  INGEST_FLUSH_GAP_MS: int(50, 0, 5_000),
  INGEST_MAX_QUEUE_EVENTS: int(200_000, 100, 10_000_000),
  INGEST_TENANT_QUEUE_PERCENT: int(50, 1, 100),
  INGEST_RATE_REQUESTS_PER_S: int(1_000, 0, 1_000_000),
  INGEST_RATE_REQUESTS_BURST: int(2_000, 1, 10_000_000),
  INGEST_RATE_EVENTS_PER_S: int(20_000, 0, 10_000_000),
  INGEST_RATE_EVENTS_BURST: int(40_000, 1, 100_000_000),
  INGEST_BACKDATE_DAYS: int(30, 0, 3650),
  INGEST_MAX_FUTURE_MINUTES: int(1440, 0, 43_200),
  // Worker threads that parse, validate and normalize event bodies (ingest/ingest.pool.ts); unset:
  // one per core but the one the HTTP server and the engine's inserts keep; 0: in the server's thread.
  INGEST_WORKERS: int(-1, -1, 64),
  INGEST_SENSITIVE_TRAITS: z
    .string()
    .regex(/^[A-Za-z0-9_]+(,[A-Za-z0-9_]+)*$/, { message: 'expected a comma-separated list of trait names' })
    .default('phone,mobile,phoneNumber,phone_number,nationalId,national_id,idNumber,id_number,idCard,id_card,idNo,id_no,name,firstName,lastName,fullName,cardNumber,card_number,cardNo,card_no,bankCard,bank_card,email,address'),
  METRICS_DEFAULT: bool(true),
  PIPELINE_RETRIES: int(2, 0, 10),
  PIPELINE_RETRY_BASE_MS: int(2_000, 10, 600_000),
  PIPELINE_LEASE_MS: int(3_600_000, 10_000, 86_400_000),
  TAG_RUN_KEY_RANGE: int(0, 0, 100_000_000),
  SEGMENT_CACHE_MB: int(1024, 0, 262_144),
  LANE_REQUEST_MAX_THREADS: int(0, 0, 1024),
  LANE_REQUEST_MAX_MEMORY_MB: int(2048, 0, 1_048_576),
  LANE_REQUEST_PRIORITY: int(1, 0, 100),
  LANE_INGEST_MAX_THREADS: int(0, 0, 1024),
  LANE_INGEST_MAX_MEMORY_MB: int(4096, 0, 1_048_576),
  LANE_INGEST_PRIORITY: int(1, 0, 100),
  LANE_PIPELINE_MAX_THREADS: int(0, 0, 1024),
  LANE_PIPELINE_MAX_MEMORY_MB: int(0, 0, 1_048_576),
  LANE_PIPELINE_PRIORITY: int(0, 0, 100),
  LANE_REQUEST_NICE: int(0, -20, 19),
  LANE_INGEST_NICE: int(0, -20, 19),
  LANE_PIPELINE_NICE: int(19, -20, 19),
})

type Raw = z.infer<typeof configSchema>

export interface Config {
  readonly port: number
  readonly host: string
  readonly logLevel: Raw['LOG_LEVEL']
  readonly dataDir: string
  readonly clickhouse: Readonly<{
    mode: 'embedded' | 'remote'
    url: string | undefined
    user: string
    password: string
    database: string
    requestTimeoutMs: number
  }>
  readonly demo: Readonly<{ mode: 'auto' | 'true' | 'false'; customers: number; days: number; seed: number }>
  readonly defaultTimeZone: string
  readonly operatorToken: string | undefined
  readonly piiSecret: string | undefined
  readonly keyCacheTtlMs: number
  readonly shutdownTimeoutMs: number
  readonly roles: ReadonlySet<'api' | 'ingest-worker' | 'scheduler'>
  /** Processes serving the HTTP API on the port (server/cluster.ts); 1: this process alone. */
  readonly apiProcesses: number
  readonly kafka:
    | Readonly<{
        brokers: readonly string[]
        clientId: string
        topic: string
        dlqTopic: string
        groupId: string
        partitions: number
        replicationFactor: number
        sendTimeoutMs: number
        /** The most one partition's share of a produce request may be (the topic's max.message.bytes). */
        maxMessageBytes: number
      }>
    | undefined
  readonly ingest: Readonly<{
    flushRows: number
    flushMs: number
    flushGapMs: number
    maxQueueEvents: number
    /** The share (percent) of maxQueueEvents one tenant's waiting events may hold. */
    tenantQueuePercent: number
    /** Per-tenant token buckets at the edge (0 per second: no limit). */
    rate: Readonly<{ requestsPerS: number; requestsBurst: number; eventsPerS: number; eventsBurst: number }>
    backdateDays: number
    maxFutureMinutes: number
    sensitiveTraits: readonly string[]
    /** Worker threads for parsing, validation and normalization; 0: in the HTTP thread. */
    workers: number
  }>
  readonly collectDefaultMetrics: boolean
  /** tagKeyRange: customer keys per range of a tag run's staging and diff (0: derived from the bank). */
  readonly pipelines: Readonly<{ retries: number; retryBaseMs: number; leaseMs: number; tagKeyRange: number }>
  /** Bytes of tag bitmaps held in memory for segment previews (0: previews run in ClickHouse). */
  readonly segmentCacheBytes: number
  /** Layouts served: how often their exposures are written (an insert into layout_exposures). */
  readonly layouts: Readonly<{ exposureFlushMs: number }>
  /** Per engine lane (core/lanes.ts): its query limits. */
  readonly lanes: Readonly<Record<Lane, LaneLimits>>
}

export class ConfigError extends Error {
  readonly issues: readonly { variable: string; message: string; received: string | undefined }[]
  constructor(issues: ConfigError['issues']) {
    super(
      'Invalid configuration:\n' +
        issues
          .map((i) => `  ${i.variable}: ${i.message}${i.received === undefined ? '' : ` (got ${JSON.stringify(i.received)})`}`)
          .join('\n'),
    )
    this.name = 'ConfigError'
    this.issues = issues
  }
}

const SECRET_VARIABLES = new Set(['CLICKHOUSE_PASSWORD', 'QIANMIAN_OPERATOR_TOKEN', 'QIANMIAN_PII_SECRET'])

/** Parses the environment once; throws ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings count as unset, the way shells and .env files usually mean them.
  const input: Record<string, string> = {}
  for (const key of Object.keys(configSchema.shape)) {
    const v = env[key]
    if (v !== undefined && v !== '') input[key] = v
  }
  const parsed = configSchema.safeParse(input)
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const variable = String(issue.path[0] ?? '(environment)')
        const received = SECRET_VARIABLES.has(variable) ? undefined : input[variable]
        return { variable, message: issue.message, received }
      }),
    )
  }
  const r = parsed.data
  // Digests are how customers are matched: every process writing to one server must make them
  // with the same secret. The embedded default keeps a generated one in its data directory, which
  // against a server would differ from process to process and split every customer silently.
  if (r.CLICKHOUSE_URL && !r.QIANMIAN_PII_SECRET) {
    throw new ConfigError([
      { variable: 'QIANMIAN_PII_SECRET', message: 'required when CLICKHOUSE_URL is set: every process writing to the server must digest with the same secret', received: undefined },
    ])
  }
  if (r.QIANMIAN_API_PROCESSES > 1 && !/\b(all|api)\b/.test(r.QIANMIAN_ROLES)) {
    throw new ConfigError([{ variable: 'QIANMIAN_API_PROCESSES', message: 'more than one API process needs the api role (QIANMIAN_ROLES)', received: String(r.QIANMIAN_API_PROCESSES) }])
  }
  const config: Config = {
    port: r.PORT,
    host: r.HOST,
    logLevel: r.LOG_LEVEL,
    dataDir: path.resolve(r.QIANMIAN_DATA_DIR),
    clickhouse: Object.freeze({
      mode: r.CLICKHOUSE_URL ? ('remote' as const) : ('embedded' as const),
      url: r.CLICKHOUSE_URL,
      user: r.CLICKHOUSE_USER,
      password: r.CLICKHOUSE_PASSWORD,
      database: r.CLICKHOUSE_DATABASE,
      requestTimeoutMs: r.CLICKHOUSE_REQUEST_TIMEOUT_MS,
    }),
    demo: Object.freeze({
      mode: r.QIANMIAN_DEMO,
      customers: r.QIANMIAN_DEMO_CUSTOMERS,
      days: r.QIANMIAN_DEMO_DAYS,
      seed: r.QIANMIAN_DEMO_SEED,
    }),
    defaultTimeZone: r.QIANMIAN_DEFAULT_TIMEZONE,
    operatorToken: r.QIANMIAN_OPERATOR_TOKEN,
    piiSecret: r.QIANMIAN_PII_SECRET,
    keyCacheTtlMs: r.QIANMIAN_KEY_CACHE_TTL_MS,
    shutdownTimeoutMs: r.SHUTDOWN_TIMEOUT_MS,
    roles: Object.freeze(
      new Set(
        r.QIANMIAN_ROLES.split(',').flatMap((x) => (x === 'all' ? (['api', 'ingest-worker', 'scheduler'] as const) : [x as 'api' | 'ingest-worker' | 'scheduler'])),
      ),
    ),
    apiProcesses: r.QIANMIAN_API_PROCESSES,
    kafka: r.KAFKA_BROKERS
      ? Object.freeze({
          brokers: Object.freeze(r.KAFKA_BROKERS.split(',')),
          clientId: r.KAFKA_CLIENT_ID,
          topic: r.KAFKA_TOPIC,
          dlqTopic: r.KAFKA_DLQ_TOPIC,
          groupId: r.KAFKA_GROUP_ID,
          partitions: r.KAFKA_PARTITIONS,
          replicationFactor: r.KAFKA_REPLICATION_FACTOR,
          sendTimeoutMs: r.KAFKA_SEND_TIMEOUT_MS,
          maxMessageBytes: r.KAFKA_MAX_MESSAGE_BYTES,
        })
      : undefined,
    ingest: Object.freeze({
      flushRows: r.INGEST_FLUSH_ROWS,
      flushMs: r.INGEST_FLUSH_MS,
      flushGapMs: r.INGEST_FLUSH_GAP_MS,
      maxQueueEvents: r.INGEST_MAX_QUEUE_EVENTS,
      tenantQueuePercent: r.INGEST_TENANT_QUEUE_PERCENT,
      rate: Object.freeze({
        requestsPerS: r.INGEST_RATE_REQUESTS_PER_S,
        requestsBurst: r.INGEST_RATE_REQUESTS_BURST,
        eventsPerS: r.INGEST_RATE_EVENTS_PER_S,
        eventsBurst: r.INGEST_RATE_EVENTS_BURST,
      }),
      backdateDays: r.INGEST_BACKDATE_DAYS,
      maxFutureMinutes: r.INGEST_MAX_FUTURE_MINUTES,
      sensitiveTraits: Object.freeze(r.INGEST_SENSITIVE_TRAITS.split(',')),
      workers: r.INGEST_WORKERS >= 0 ? r.INGEST_WORKERS : Math.max(1, os.availableParallelism() - 1),
    }),
    collectDefaultMetrics: r.METRICS_DEFAULT,
    pipelines: Object.freeze({ retries: r.PIPELINE_RETRIES, retryBaseMs: r.PIPELINE_RETRY_BASE_MS, leaseMs: r.PIPELINE_LEASE_MS, tagKeyRange: r.TAG_RUN_KEY_RANGE }),
    segmentCacheBytes: r.SEGMENT_CACHE_MB * 1024 * 1024,
    layouts: Object.freeze({ exposureFlushMs: r.LAYOUT_EXPOSURE_FLUSH_MS }),
    lanes: Object.freeze({
      request: laneLimits(r.LANE_REQUEST_MAX_THREADS, r.LANE_REQUEST_MAX_MEMORY_MB, r.LANE_REQUEST_PRIORITY, r.LANE_REQUEST_NICE),
      ingest: laneLimits(r.LANE_INGEST_MAX_THREADS, r.LANE_INGEST_MAX_MEMORY_MB, r.LANE_INGEST_PRIORITY, r.LANE_INGEST_NICE),
      // Unset, a pipeline query may take half the machine's memory: the rest stays for serving.
      pipeline: laneLimits(r.LANE_PIPELINE_MAX_THREADS, r.LANE_PIPELINE_MAX_MEMORY_MB || Math.floor(os.totalmem() / 2 / 2 ** 20), r.LANE_PIPELINE_PRIORITY, r.LANE_PIPELINE_NICE),
    }),
  }
  return Object.freeze(config)
}

function laneLimits(maxThreads: number, maxMemoryMb: number, priority: number, nice: number): LaneLimits {
  return Object.freeze({ maxThreads, maxMemoryBytes: maxMemoryMb * 2 ** 20, priority, nice })
}

/** Variables and their documentation, used to keep the README table honest (see config.test.ts). */
export const configVariables = Object.keys(configSchema.shape)
