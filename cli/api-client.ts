import { AppError, httpError } from '../core/errors.js'

/**
 * The CLI's side of `--server`: JSON calls to a running Qianmian with a bearer credential (the
 * operator token or a tenant key). A refusal comes back as the server's own coded error.
 */

export type ApiCall = <T>(method: string, path: string, body?: unknown) => Promise<T>

export function apiClient(server: string, bearer: string, fetchImpl: typeof fetch = fetch): ApiCall {
  const base = server.replace(/\/+$/, '')
  return async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    let res: Response
    try {
      res = await fetchImpl(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
    } catch (e) {
      throw new AppError('STORAGE_UNAVAILABLE', `Cannot reach the server at ${base}: ${(e as Error).message}`)
    }
    const text = await res.text()
    let json: unknown
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      json = undefined
    }
    if (!res.ok) throw httpError(res.status, json)
    return json as T
  }
}
