// Talking to the control plane: same-origin fetch, the session cookie sent by the
// browser (HttpOnly: this code never sees it), the CSRF token kept in memory only
// and sent with every change. Nothing is written to localStorage, sessionStorage or
// IndexedDB; a reload asks the control plane for the session again.

export interface Session {
  readonly tokenId: string
  readonly name: string
  readonly role: string
  readonly via: 'session' | 'token'
  readonly expiresAt: number | null
  readonly csrf?: string
  /** Operations the role allows (the control plane decides; this only greys out controls). */
  readonly allowed: readonly string[]
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

let session: Session | null = null
let onSignedOut: (why: string) => void = () => {}
let onReadiness: (notReady: string | null) => void = () => {}

export function currentSession(): Session | null {
  return session
}

export function setSession(s: Session | null): void {
  session = s
}

/** Called when the control plane refuses the session (expired, signed out, token revoked). */
export function whenSignedOut(fn: (why: string) => void): void {
  onSignedOut = fn
}

/**
 * Called with the control plane's reason when it answers 503 (not ready: store refusing
 * writes, sealed, audit chain broken …), and with null on the next answer that is not a 503.
 */
export function whenReadiness(fn: (notReady: string | null) => void): void {
  onReadiness = fn
}

/** Whether the signed-in role may perform `operation`. */
export function may(operation: string): boolean {
  return session?.allowed.includes(operation) ?? false
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && session?.csrf !== undefined) headers['x-keymesh-csrf'] = session.csrf
  const res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  const text = await res.text()
  let json: unknown
  try {
    json = text === '' ? undefined : JSON.parse(text)
  } catch {
    throw new ApiError(res.status, 'CP_ERR_BAD_RESPONSE', `unreadable answer (${res.status})`)
  }
  onReadiness(res.status === 503 ? notReadyText(json, res.status) : null)
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error
    const e = new ApiError(res.status, err?.code ?? 'CP_ERR_BAD_RESPONSE', err?.message ?? `HTTP ${res.status}`)
    // Only a session that was in use ends here: a late answer for one already left (a sign-in link being used) changes nothing.
    if (res.status === 401 && path !== '/ui/api/session' && session !== null) {
      session = null
      onSignedOut(e.message)
    }
    throw e
  }
  return json as T
}

function notReadyText(json: unknown, status: number): string {
  const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error
  return err?.message !== undefined ? `${err.message}${err.code !== undefined ? ` (${err.code})` : ''}` : `HTTP ${status}`
}

export const get = <T>(path: string): Promise<T> => call<T>('GET', path)
export const send = <T>(method: 'POST' | 'DELETE' | 'PATCH', path: string, body?: unknown): Promise<T> => call<T>(method, path, body)

/** A query string from the fields that are set. */
export function query(fields: Record<string, string | number | boolean | undefined | null>): string {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v))
  const q = p.toString()
  return q === '' ? '' : `?${q}`
}

/** What a change would do (`?dryRun=true` on any changing admin route). */
export interface DryRun {
  readonly dryRun: true
  readonly result: unknown
  readonly changes: readonly { readonly action: string; readonly target: string; readonly reason: string; readonly notifications: readonly { readonly kind: string; readonly services?: readonly string[] }[] }[]
}

/** Adds dryRun=true to a path that may already have a query. */
export function dryRunOf(path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}dryRun=true`
}
