// How the CLI reaches the control plane: requests over node's http and https whose
// TLS connections go through platform's connectTls (a CA file, the default trust
// store, or a pinned fingerprint), and the one place where a failed request is turned
// into an error that says why: refused, a name that does not resolve, no answer in
// time, a certificate that was not accepted, or plain HTTP sent to the TLS port.
import { readFile as readFileAsync } from 'node:fs/promises'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { Readable } from 'node:stream'

import { KeymeshError } from '../protocol/src/errors.js'
import { CP_ERRORS, cpError } from '../control-plane/src/errors.js'
import { normalizeFingerprint, speaksTls, TlsRefusal, tlsConnector, type TlsTrust } from '../platform/src/tls-client.js'

/** How long the probe that tells "plain HTTP to a TLS port" apart may take. */
const TLS_PROBE_MS = 2_000

/** What a request to the admin API carries: the method, string headers, a string body, a deadline. */
export interface AdminRequest {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string | undefined
  readonly signal?: AbortSignal | undefined
}

/** The status and the whole body of an answer (fetch's Response has both too). */
export interface AdminAnswer {
  readonly status: number
  text(): Promise<string>
}

/** One request to the admin API and its answer; the CLI's client is built on one. */
export type AdminSend = (url: string, request: AdminRequest) => Promise<AdminAnswer>

/**
 * The request itself, over node's http and https (no redirect is followed); https URLs
 * are verified with `trust`. It resolves with the answer's head, the body still to read.
 */
function requester(trust: TlsTrust): (url: URL, r: AdminRequest) => Promise<IncomingMessage> {
  const createConnection = tlsConnector(trust)
  return (url, r) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const headers: Record<string, string> = { ...r.headers }
      if (r.body !== undefined) headers['content-length'] = String(Buffer.byteLength(r.body))
      const options = { method: r.method, headers, ...(r.signal ? { signal: r.signal } : {}) }
      const req = url.protocol === 'https:'
        ? httpsRequest(url, { ...options, createConnection: createConnection as never })
        : httpRequest(url, { ...options, agent: false })
      req.once('error', (err) => reject(r.signal?.aborted ? r.signal.reason : err))
      req.once('response', (res) => {
        // A body that breaks off (the connection cut) errors the stream that reads it.
        res.once('aborted', () => res.destroy(new Error('the answer was cut off')))
        resolve(res)
      })
      req.end(r.body)
    })
}

/**
 * The client's transport. It builds no fetch Response: node loads its fetch
 * implementation (undici) on the first use of Response or Headers, which alone cost
 * `keymesh key list` a third of its start (test/cli/light.test.ts).
 */
export function controlPlaneSend(trust: TlsTrust = {}): AdminSend {
  const send = requester(trust)
  return async (url, r) => {
    const res = await send(new URL(url), r)
    return {
      status: res.statusCode ?? 0,
      text: async () => {
        res.setEncoding('utf8')
        let text = ''
        for await (const chunk of res) text += chunk as string
        return text
      },
    }
  }
}

/**
 * fetch() for the admin API, for the commands that stream an answer or read its
 * headers (audit export, doctor): the method, string headers, a string body, the signal
 * and `redirect: 'manual'` are what they use.
 */
export function controlPlaneFetch(trust: TlsTrust = {}): typeof fetch {
  const send = requester(trust)
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    const method = init?.method ?? 'GET'
    const res = await send(url, {
      method,
      headers: Object.fromEntries(new Headers(init?.headers).entries()),
      body: typeof init?.body === 'string' ? init.body : undefined,
      signal: init?.signal ?? undefined,
    })
    const status = res.statusCode ?? 0
    const head = new Headers()
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) head.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string)
    const empty = status === 204 || status === 304 || method === 'HEAD'
    try {
      return new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? '', headers: head })
    } catch (err) {
      res.destroy()
      throw err
    }
  }
}

export interface FailureContext {
  readonly baseUrl: string
  readonly timeoutMs?: number
  /** An answer had begun: the connection broke while it was read (no TLS probe then). */
  readonly answered?: boolean
}

/** The error for a request that got no (complete) answer: one code and message per cause. */
export async function connectFailure(err: unknown, c: FailureContext): Promise<KeymeshError> {
  const fail = (code: keyof typeof CP_ERRORS, message: string): KeymeshError => new KeymeshError(code, { ...CP_ERRORS[code], message }, undefined, { cause: err })
  const url = new URL(c.baseUrl)
  const where = url.host
  if (err instanceof Error && err.name === 'TimeoutError') {
    return fail('CP_ERR_TIMEOUT', `the control plane at ${c.baseUrl} did not answer within ${c.timeoutMs ?? '?'} ms`)
  }
  if (err instanceof TlsRefusal) return fail('CP_ERR_TLS', `${c.baseUrl}: ${err.message}`)
  const code = errnoOf(err)
  switch (code) {
    case 'ECONNREFUSED':
      return fail('CP_ERR_UNREACHABLE', `cannot reach the control plane at ${c.baseUrl}: connection refused (is it running and listening on ${where}?)`)
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return fail('CP_ERR_DNS', `cannot reach the control plane at ${c.baseUrl}: the host name ${url.hostname} does not resolve (${code})`)
    case 'ETIMEDOUT':
      return fail('CP_ERR_TIMEOUT', `cannot reach the control plane at ${c.baseUrl}: connecting timed out (a firewall, or no host at that address)`)
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return fail('CP_ERR_UNREACHABLE', `cannot reach the control plane at ${c.baseUrl}: no route to ${url.hostname} (${code})`)
  }
  if (url.protocol === 'http:' && c.answered !== true) {
    // The TLS port drops a plain HTTP request without an HTTP answer; ask it for a handshake to be sure.
    const port = Number(url.port === '' ? 80 : url.port)
    if (await speaksTls({ host: url.hostname, port }, TLS_PROBE_MS)) {
      url.protocol = 'https:'
      return fail('CP_ERR_TLS', `the control plane at ${c.baseUrl} serves HTTPS: use ${url.href.replace(/\/+$/, '')} (with --ca-file or --cp-fingerprint)`)
    }
  }
  return fail('CP_ERR_UNREACHABLE', `cannot reach the control plane at ${c.baseUrl}${code === undefined ? '' : ` (${code})`}`)
}

/** The errno-style code of a failure, however node or fetch wrapped it. */
function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string') return code
  }
  return undefined
}

/** Reads `--ca-file` and `--cp-fingerprint` (flags over environment) into what connectTls takes. */
export async function loadTrust(flags: { caFile?: string | undefined; cpFingerprint?: string | undefined }, env: Readonly<Record<string, string | undefined>>, readFile: (path: string) => Promise<Buffer> = (path) => readFileAsync(path)): Promise<TlsTrust> {
  const pinText = nonEmpty(flags.cpFingerprint) ?? nonEmpty(env['KEYMESH_CP_FINGERPRINT'])
  if (pinText !== undefined) {
    const fingerprint = normalizeFingerprint(pinText)
    if (fingerprint === undefined) throw cpError('CP_ERR_USAGE', `${flags.cpFingerprint !== undefined ? '--cp-fingerprint' : 'KEYMESH_CP_FINGERPRINT'} must be sha256: and 64 hex digits, as the control plane prints it at start`)
    // With a pin the CA is not consulted.
    return { fingerprint }
  }
  const caFile = nonEmpty(flags.caFile) ?? nonEmpty(env['KEYMESH_CA_FILE'])
  if (caFile === undefined) return {}
  let ca: Buffer
  try {
    ca = await readFile(caFile)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw cpError('CP_ERR_TLS_CERT', `CA file ${caFile}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code ?? 'cannot be read'}`)
  }
  if (ca.length > 1024 * 1024 || !ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw cpError('CP_ERR_TLS_CERT', `CA file ${caFile} does not hold a PEM certificate`)
  return { ca }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim()
}
