import type { Issue } from './types.js'

/**
 * Calls to the Qianmian API with the signed-in admin key. The key lives in sessionStorage, so it
 * is gone when the tab closes and is never sent anywhere but this origin's /v1 routes.
 */

const KEY = 'qianmian.key'

export type { Issue }

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: Issue[] = [],
  ) {
    super(message)
  }
}

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  signIn: (key: string) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
}

/** Called when the API refuses the key (revoked, tenant disabled): the shell goes back to sign-in. */
let onUnauthorized: () => void = () => {}
export const setUnauthorizedHandler = (fn: () => void) => (onUnauthorized = fn)

export async function request(method: string, path: string, body?: unknown, opts: { signal?: AbortSignal; key?: string } = {}): Promise<Response> {
  const key = opts.key ?? session.key()
  const headers: Record<string, string> = {}
  if (key) headers.authorization = `Bearer ${key}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(opts.signal ? { signal: opts.signal } : {}) })
  if (res.ok) return res
  const json = (await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string; issues?: Issue[] } } | undefined
  const err = new ApiError(res.status, json?.error?.code ?? 'HTTP', json?.error?.message ?? `HTTP ${res.status}`, json?.error?.issues ?? [])
  if (res.status === 401 && !opts.key) onUnauthorized()
  throw err
}

export async function api<T>(method: string, path: string, body?: unknown, opts: { signal?: AbortSignal; key?: string } = {}): Promise<T> {
  const res = await request(method, path, body, opts)
  return (res.status === 204 ? undefined : await res.json()) as T
}

export const get = <T>(path: string, opts: { signal?: AbortSignal } = {}) => api<T>('GET', path, undefined, opts)
export const enc = encodeURIComponent

/**
 * Downloads an authenticated file: a plain link cannot carry the Bearer header, so the file is
 * fetched and handed to the browser as a blob.
 */
export async function download(path: string, fallbackName: string): Promise<void> {
  const res = await request('GET', path)
  const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? fallbackName
  const url = URL.createObjectURL(await res.blob())
  const a = document.createElement('a')
  a.href = url
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}
