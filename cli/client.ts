// The CLI's client for the control plane's admin API.
//
// Where to connect and which token to send come from flags first, then the
// environment (passed in as a record: this module never reads process.env).
// What must hold: a token is never printed, and every failure is a KeymeshError
// with a one-line message — the server's own code and message when it answered
// with one, else one code per reason it could not be reached (cli/transport.ts:
// CP_ERR_UNREACHABLE, CP_ERR_DNS, CP_ERR_TIMEOUT, CP_ERR_TLS). An https control
// plane is verified with --ca-file, a pinned --cp-fingerprint, or the default
// trust store.
import { readFile } from 'node:fs/promises'

import { KeymeshError, type ErrorSpec } from '../protocol/src/errors.js'
import { CP_ERRORS, cpError } from '../control-plane/src/errors.js'
import type { TlsTrust } from '../platform/src/tls-client.js'
import { connectFailure, controlPlaneSend, loadTrust, type AdminAnswer, type AdminSend } from './transport.js'
import { looseSecretFile } from '../platform/src/files.js'

export interface ClientFlags {
  /** `--cp URL` */
  readonly cp?: string | undefined
  /** `--token-file F` */
  readonly tokenFile?: string | undefined
  /** `--ca-file F`: PEM of the CA (or the control plane's own certificate) to trust. */
  readonly caFile?: string | undefined
  /** `--cp-fingerprint sha256:…`: the one certificate to accept. */
  readonly cpFingerprint?: string | undefined
}

export type Env = Readonly<Record<string, string | undefined>>

export interface ClientConfig {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:7400`. */
  readonly baseUrl: string
  readonly tokenFile: string | undefined
}

export interface ClientOptions {
  /** Per-request time limit (default 30 s). */
  readonly timeoutMs?: number
  /** How an https control plane is verified (default: the default trust store). */
  readonly trust?: TlsTrust
  /** For tests; defaults to controlPlaneSend(trust) (cli/transport.ts). fetch fits. */
  readonly send?: AdminSend
  /**
   * `--dry-run`: every changing request carries `dryRun=true`, and its answer (what
   * would change; nothing did) arrives as a thrown DryRunAnswer, so no command goes
   * on as though its change had been made.
   */
  readonly dryRun?: boolean
}

/** What the control plane answers a `?dryRun=true` request: the operations it went through and rolled back. */
export interface DryRunReport {
  readonly dryRun: true
  readonly result: unknown
  readonly changes: readonly { action: string; target: string; reason: string; details: Record<string, unknown>; notifications: readonly { kind: string; services?: readonly string[] }[] }[]
}

/** Thrown by a dry-run client when a changing request was answered; context.ts's run() prints it. */
export class DryRunAnswer {
  constructor(readonly report: DryRunReport) {}
}

// Tokens are opaque printable ASCII; the limit keeps a mistaken path (a log file,
// a disk image) from being read whole and sent as a header.
const MAX_TOKEN_FILE_BYTES = 4096
const TOKEN_TEXT = /^[\x21-\x7e]+$/

/** Merges flags over environment. Missing `--cp` is a usage error; a missing token file is allowed here. */
export function resolveClientConfig(flags: ClientFlags, env: Env): ClientConfig {
  const cp = nonEmpty(flags.cp) ?? nonEmpty(env['KEYMESH_CP'])
  if (cp === undefined) throw cpError('CP_ERR_USAGE', 'name the control plane with --cp URL or KEYMESH_CP')
  let url: URL
  try {
    url = new URL(cp)
  } catch {
    throw cpError('CP_ERR_USAGE', `control plane URL ${JSON.stringify(cp)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw cpError('CP_ERR_USAGE', `control plane URL must start with http:// or https://`)
  }
  // Credentials in the URL would end up in error messages; the token file is the way.
  if (url.username !== '' || url.password !== '') throw cpError('CP_ERR_USAGE', 'control plane URL must not carry credentials; use --token-file')
  if (url.search !== '' || url.hash !== '') throw cpError('CP_ERR_USAGE', 'control plane URL must not have a query or fragment')
  const trustGiven = [nonEmpty(flags.caFile) ?? nonEmpty(env['KEYMESH_CA_FILE']), nonEmpty(flags.cpFingerprint) ?? nonEmpty(env['KEYMESH_CP_FINGERPRINT'])].some((v) => v !== undefined)
  // A pin or a CA on a plain http:// URL would protect nothing while seeming to.
  if (trustGiven && url.protocol === 'http:') throw cpError('CP_ERR_USAGE', `--ca-file and --cp-fingerprint (KEYMESH_CA_FILE, KEYMESH_CP_FINGERPRINT) verify TLS; the control plane URL ${url.origin} is plain http://`)
  return {
    baseUrl: url.href.replace(/\/+$/, ''),
    tokenFile: nonEmpty(flags.tokenFile) ?? nonEmpty(env['KEYMESH_TOKEN_FILE']),
  }
}

/** Reads a bearer token: trimmed, non-empty, one printable word. Errors name the file, never its content. */
export async function readTokenFile(path: string): Promise<string> {
  let raw: Buffer
  try {
    raw = await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : 'cannot be read'
    throw cpError('CP_ERR_TOKEN_FILE', `${path}: ${why}`)
  }
  if (raw.length > MAX_TOKEN_FILE_BYTES) throw cpError('CP_ERR_TOKEN_FILE', `${path}: too large to be a token`)
  const loose = looseSecretFile(path)
  if (loose !== undefined) throw cpError('CP_ERR_TOKEN_FILE_MODE', loose)
  const token = raw.toString('utf8').trim()
  if (token === '') throw cpError('CP_ERR_TOKEN_FILE', `${path}: file is empty`)
  if (!TOKEN_TEXT.test(token)) throw cpError('CP_ERR_TOKEN_FILE', `${path}: does not hold a single token`)
  return token
}

/** The error for an answer that carried the server's `{"error":{"code","message"}}`. */
export class ControlPlaneError extends KeymeshError {
  constructor(code: string, status: number, message: string) {
    const known = (CP_ERRORS as Record<string, ErrorSpec>)[code]
    super(code, { message, status, closeCode: known?.closeCode ?? CP_ERRORS.CP_ERR_INTERNAL.closeCode })
    this.name = 'ControlPlaneError'
  }
}

export type HttpVerb = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

export class ControlPlaneClient {
  readonly baseUrl: string
  readonly #token: string | undefined
  readonly #timeoutMs: number
  readonly #send: AdminSend
  readonly #dryRun: boolean

  constructor(baseUrl: string, token: string | undefined, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '')
    this.#token = token
    this.#timeoutMs = options.timeoutMs ?? 30_000
    this.#send = options.send ?? controlPlaneSend(options.trust)
    this.#dryRun = options.dryRun === true
  }

  /** The same control plane and token, with `--dry-run` on or off. */
  withDryRun(dryRun: boolean): ControlPlaneClient {
    return new ControlPlaneClient(this.baseUrl, this.#token, { timeoutMs: this.#timeoutMs, send: this.#send, dryRun })
  }

  get<T = unknown>(path: string, query?: Readonly<Record<string, string | number | boolean | undefined>>): Promise<T> {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v))
    const qs = params.toString()
    return this.request<T>('GET', qs === '' ? path : `${path}?${qs}`)
  }

  post<T = unknown>(path: string, body?: unknown): Promise<T> { return this.request<T>('POST', path, body) }
  put<T = unknown>(path: string, body?: unknown): Promise<T> { return this.request<T>('PUT', path, body) }
  patch<T = unknown>(path: string, body?: unknown): Promise<T> { return this.request<T>('PATCH', path, body) }
  delete<T = unknown>(path: string): Promise<T> { return this.request<T>('DELETE', path) }

  /** One JSON request. `path` starts with `/` and is appended to the base URL (which may have a path). */
  async request<T = unknown>(method: HttpVerb, path: string, body?: unknown): Promise<T> {
    const rehearse = this.#dryRun && method !== 'GET'
    if (rehearse) path += `${path.includes('?') ? '&' : '?'}dryRun=true`
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.#token !== undefined) headers['authorization'] = `Bearer ${this.#token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res: AdminAnswer
    try {
      // A redirect is not followed (it could carry the token elsewhere); it is
      // reported as an answer that was not understood.
      res = await this.#send(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
      })
    } catch (err) {
      throw await connectFailure(err, { baseUrl: this.baseUrl, timeoutMs: this.#timeoutMs })
    }
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      throw await connectFailure(err, { baseUrl: this.baseUrl, timeoutMs: this.#timeoutMs, answered: true })
    }
    if (res.status >= 200 && res.status < 300) {
      if (text === '') return undefined as T
      let answer: T
      try {
        answer = JSON.parse(text) as T
      } catch {
        throw cpError('CP_ERR_BAD_RESPONSE', `HTTP ${res.status} with a body that is not JSON`)
      }
      if (rehearse) throw new DryRunAnswer(answer as DryRunReport)
      return answer
    }
    throw errorFromAnswer(res.status, text)
  }
}

/** Builds a client from flags and environment, reading the token file unless `requireToken` is false. */
export async function createClient(flags: ClientFlags, env: Env, options: ClientOptions & { requireToken?: boolean } = {}): Promise<ControlPlaneClient> {
  const config = resolveClientConfig(flags, env)
  let token: string | undefined
  if (config.tokenFile !== undefined) token = await readTokenFile(config.tokenFile)
  else if (options.requireToken ?? true) throw cpError('CP_ERR_USAGE', 'name a token file with --token-file F or KEYMESH_TOKEN_FILE')
  const trust = options.trust ?? (await loadTrust(flags, env))
  return new ControlPlaneClient(config.baseUrl, token, { ...options, trust })
}

function errorFromAnswer(status: number, text: string): KeymeshError {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
  if (typeof error?.code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(error.code) && typeof error.message === 'string') {
    return new ControlPlaneError(error.code, status, oneLine(error.message))
  }
  return cpError('CP_ERR_BAD_RESPONSE', `HTTP ${status} without an error code`)
}

/** Server text goes to a terminal: no control characters (escape sequences), one bounded line. */
function oneLine(s: string): string {
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()
  return clean.length > 500 ? `${clean.slice(0, 500)}…` : clean
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim()
}
