import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import { addDays, chDateTime, daySchema, instantSchema, MAX_INSTANT_MS, zonedMidnight } from '../core/time.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import type { TagCatalog } from './tag.catalog.js'
import { customerProfile, requireCustomerKey } from './customers.lookup.js'

/**
 * A customer's profile and tags, for the bank's own staff tools and the console. Minimum
 * necessary: an age band instead of the birth date, the masked name, no phone digest, no account
 * numbers; high-sensitivity tags only for admin keys; `at` answers "what were X's tags on D".
 */

const security = [{ apiKey: [] }]
const customerId = z.object({ id: z.string().min(1).max(128).describe('the bank customer number') })

const profile = z.object({
  customerId: z.string(),
  customerKey: z.number(),
  nameMasked: z.string(),
  gender: z.string(),
  ageBand: z.string().nullable(),
  regionCode: z.string(),
  branchCode: z.string(),
  occupation: z.string(),
  language: z.string(),
  elderMode: z.boolean(),
  customerSince: z.string(),
})

const tagValue = z.object({
  name: z.string(),
  type: z.string(),
  value: z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]),
  purpose: z.array(z.string()),
  sensitivity: z.string(),
})

function ageBand(age: number | null): string | null {
  if (age === null) return null
  if (age < 18) return 'under_18'
  if (age >= 70) return '70+'
  const lo = age < 30 ? 18 : Math.floor(age / 10) * 10
  return `${lo}-${lo === 18 ? 29 : lo + 9}`
}

/**
 * The instant an `at` query names. A date alone is the end of that day in the bank's time zone:
 * "on 1 November" asks what held at the close of the bank's 1 November, not at midnight UTC (08:00
 * in Shanghai, before most of the day). A date-time carries its own zone and is read as given.
 */
export function atInstant(at: string, timeZone: string): Date {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(at)) return new Date(at)
  // The last millisecond of the day; west of UTC the end of 2299-12-31 lies past what a column holds.
  return new Date(Math.min(zonedMidnight(addDays(at, 1), timeZone).getTime() - 1, MAX_INSTANT_MS))
}

export const AT_DESCRIPTION = "a time with its zone, or a date: the end of that day in the bank's time zone"

export function registerCustomerRoutes(app: FastifyInstance, deps: { auth: Auth; db: Db; catalog: TagCatalog; timeZone: (tenantId: number) => Promise<string> }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, db, catalog } = deps

  const resolve = (tenantId: number, id: string) => requireCustomerKey(db, tenantId, id)

  r.get(
    '/v1/customers/:id',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'customer.profile.read', objectKind: 'customer', customerParam: 'id', personal: true } },
      schema: {
        tags: ['customers'],
        summary: "A customer's profile and tag values, now or as of a time",
        security,
        params: customerId,
        querystring: z.object({ at: instantSchema.or(daySchema).optional().describe(AT_DESCRIPTION) }),
        response: { 200: z.object({ profile: profile.nullable(), tags: z.array(tagValue), at: z.string().nullable() }), 404: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      const key = await resolve(p.tenantId, req.params.id)
      const row = await customerProfile(db, p.tenantId, key)
      const at = req.query.at ? chDateTime(atInstant(req.query.at, await deps.timeZone(p.tenantId))) : undefined
      const tags = await catalog.customerTags(p.tenantId, key, seesSensitiveTags(p), at)
      return {
        profile: row
          ? {
              customerId: row.customer_no || req.params.id,
              customerKey: row.customer_key,
              nameMasked: row.name_masked,
              gender: row.gender,
              ageBand: ageBand(row.age),
              regionCode: row.region_code,
              branchCode: row.branch_code,
              occupation: row.occupation,
              language: row.language,
              elderMode: row.elder_mode === 1,
              customerSince: row.since,
            }
          : null,
        tags,
        at: at ?? null,
      }
    },
  )

  r.get(
    '/v1/customers/:id/tags/:tag/history',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'customer.tag_history.read', objectKind: 'tag', objectParam: 'tag', customerParam: 'id', personal: true } },
      schema: {
        tags: ['customers'],
        summary: "Every change of one of a customer's tags",
        security,
        params: customerId.extend({ tag: z.string().max(63) }),
        response: {
          200: z.object({ changes: z.array(z.object({ validFrom: z.string(), value: z.string(), removed: z.boolean(), version: z.number() })) }),
          404: errorBody,
        },
      },
    },
    async (req) => {
      const p = req.principal!
      const key = await resolve(p.tenantId, req.params.id)
      return { changes: await catalog.history(p.tenantId, key, req.params.tag, seesSensitiveTags(p)) }
    },
  )
}
