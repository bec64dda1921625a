// The data API's routes on the agent's local API: encrypt, decrypt, rewrap,
// datakey, dropopen, dropseal, sign, verify, hmac and hmac/verify, single or batched, each performed by the control plane
// through the control session as this agent's service (the control plane checks
// the grants and audits every call).
//
//   POST /v1/encrypt  → {ciphertext, key, version}
//   POST /v1/decrypt  → {plaintext, key, version}
//   POST /v1/rewrap   → {ciphertext, key, version}      (the plaintext never leaves the control plane)
//   POST /v1/datakey  → {ciphertext, plaintext?, key, version}   (no plaintext with wrappedOnly)
//   POST /v1/dropopen → {chunkKey, key, version}       (an x25519 drop's chunk key, for its recipient)
//   POST /v1/dropseal → {senderTerm, key, version}     (an x25519 drop's sender term, for its sender)
//   POST /v1/sign     → {signature, key, version}      (km1s:<key>:<version>:…, over the message as given)
//   POST /v1/verify   → {valid, key, version}          (valid: false when the signature is not the message's)
//   POST /v1/hmac     → {mac, key, version}            (km1m:<key>:<version>:…, HMAC-SHA256, 32 bytes)
//   POST /v1/hmac/verify → {valid, key, version}
//   {items: [...]}    → {items: [{ok: true, ...answer} | {ok: false, error: {code, message}}]}, in order
//
// Bodies are in validate.ts. Binary fields are canonical base64. A batch may
// instead be sent as `application/octet-stream` (binary-body.ts, layout there and
// in the README): raw bytes, no base64, answered in the same format.
//
// Contract:
//   - A single call that fails answers the error's status with {error: {code,
//     message}}; the control plane's code is kept (CP_ERR_FORBIDDEN 403,
//     CP_ERR_DECRYPT 400, ...). Not connected: 503 AGENT_ERR_CP_UNREACHABLE.
//   - A batch answers 200 with one entry per item, in order; an item that is
//     malformed or refused fails alone. The valid items go out together (packed
//     into kms.batch messages by the multiplexer). A batch while not connected
//     is refused whole (503).
//   - Bodies up to BATCH_BODY_LIMIT are read (1000 items of 32 KiB in base64 with
//     full contexts fit); a single call is bound by the per-item limits.
//   - Logs name the operation, the key (single calls), item counts and error codes:
//     never plaintext, data keys, shared secrets, ciphertexts or contexts.
import type { Logger } from 'pino'

import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { KMS_OPS, type KmsOp } from '../../../protocol/src/index.js'
import type { ApiRequest, ApiResponse, ApiRoute } from '../api/routes.js'
import { agentError } from '../errors.js'
import type { KmsRequest, KmsResult } from './multiplexer.js'
import { BINARY_CONTENT_TYPE, decodeBinaryBatch, encodeBinaryAnswers, type BinaryAnswer, type BinaryItem } from './binary-body.js'
import { parseBody, parseItem } from './validate.js'

/** Largest request body of the data API's routes: a full batch of 1000 maximal items is ~47 MB. */
export const BATCH_BODY_LIMIT = 48 * 1024 * 1024

/** What the routes need of the control client. */
export interface KmsBackend {
  request(req: KmsRequest, signal?: AbortSignal): Promise<KmsResult>
  /** One promise per request, in order. */
  requestBatch(reqs: readonly KmsRequest[], signal?: AbortSignal): Promise<KmsResult>[]
  /** Requests can go out now (the control session is connected). */
  readonly connected: boolean
}

export interface KmsRoutesOptions {
  readonly backend: KmsBackend
  readonly logger: Logger
}

/** The route of each operation: its name, but /v1/hmac/verify for hmacverify. */
const routePath = (op: KmsOp): string => (op === 'hmacverify' ? '/v1/hmac/verify' : `/v1/${op}`)

/** The routes, one per operation; each takes a single body or a batch. */
export function kmsRoutes(o: KmsRoutesOptions): ApiRoute[] {
  return KMS_OPS.map((op) => ({
    method: 'POST',
    path: routePath(op),
    maxBodyBytes: BATCH_BODY_LIMIT,
    binaryBody: true,
    handler: (req: ApiRequest) => (req.body instanceof Uint8Array ? handleBinary(o, op, req.body, req.signal) : handle(o, op, req)),
  }))
}

async function handle(o: KmsRoutesOptions, op: KmsOp, req: ApiRequest): Promise<ApiResponse> {
  const parsed = parseBody(op, req.body)
  if (parsed.kind === 'single') {
    const key = parsed.request.key
    try {
      const r = await o.backend.request(parsed.request, req.signal)
      const answered = r.key ?? key
      const body = `{${answerFields(op, parsed.request, r)}}`
      o.logger.debug({ op, key: answered }, 'KMS call answered')
      return json(body)
    } catch (err) {
      o.logger.debug({ op, key, code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'KMS call refused')
      throw err
    }
  }
  if (!o.backend.connected) throw agentError('AGENT_ERR_CP_UNREACHABLE', 'the agent is not connected to the control plane')
  const { items, codes: failed } = await runBatch(o, op, parsed.items, req.signal)
  const codes = [...new Set(failed)].slice(0, 8)
  o.logger.debug({ op, items: items.length, failed: failed.length, ...(codes.length > 0 ? { codes } : {}) }, 'KMS batch answered')
  return json(joinItems(items))
}

/**
 * A binary batch body (binary-body.ts): the same per-item rules and outcomes as
 * a JSON batch, answered as a binary body. The body is wiped once its items are
 * copied out (it holds plaintext).
 */
async function handleBinary(o: KmsRoutesOptions, op: KmsOp, body: Uint8Array, signal: AbortSignal): Promise<ApiResponse> {
  let items: BinaryItem[]
  try {
    items = decodeBinaryBatch(op, body)
  } finally {
    body.fill(0)
  }
  if (!o.backend.connected) {
    for (const item of items) if (item.ok) item.request.plaintext?.fill(0)
    throw agentError('AGENT_ERR_CP_UNREACHABLE', 'the agent is not connected to the control plane')
  }
  const valid: KmsRequest[] = []
  const at: number[] = []
  const answers: BinaryAnswer[] = new Array(items.length)
  items.forEach((item, i) => {
    if (item.ok) {
      valid.push(item.request)
      at.push(i)
    } else answers[i] = item
  })
  const settled = o.backend.requestBatch(valid, signal)
  await Promise.all(settled.map((p, j) => p.then(
    (result) => void (answers[at[j] as number] = { ok: true, result }),
    (err: unknown) => void (answers[at[j] as number] = { ok: false, error: typed(o, err) }),
  )))
  const failed = answers.filter((a) => !a.ok).map((a) => (a as { error: KeymeshError }).error.code)
  const codes = [...new Set(failed)].slice(0, 8)
  o.logger.debug({ op, items: items.length, failed: failed.length, binary: true, ...(codes.length > 0 ? { codes } : {}) }, 'KMS batch answered')
  return { raw: { contentType: BINARY_CONTENT_TYPE, body: encodeBinaryAnswers(op, answers) } }
}

/**
 * `{"items":[…]}` written straight into one buffer: a joined string of ~140 KB
 * (100 items) was flattened, measured and encoded again by the server.
 */
function joinItems(items: readonly string[]): Uint8Array {
  const head = '{"items":['
  let n = head.length + 2 + Math.max(0, items.length - 1)
  const sizes = items.map((item) => Buffer.byteLength(item))
  for (const size of sizes) n += size
  const out = Buffer.allocUnsafeSlow(n)
  let at = out.write(head, 0, 'latin1')
  items.forEach((item, i) => {
    if (i > 0) out[at++] = 0x2c // ,
    at += out.write(item, at, sizes[i] === item.length ? 'latin1' : 'utf8')
  })
  out[at++] = 0x5d // ]
  out[at++] = 0x7d // }
  return out
}

/**
 * The answer's JSON, written here rather than by the server's JSON.stringify,
 * which scans every ciphertext and base64 string for characters to escape
 * (~2 µs per 1.4 KB string on Node 20). Each value below is either text that
 * JSON writes as it is (base64, a key name, a number, a checked ciphertext) or
 * goes through JSON.stringify.
 */
function json(body: string | Uint8Array): ApiResponse {
  return { raw: { contentType: 'application/json; charset=utf-8', body } }
}

/**
 * Checks every item, sends the valid ones together, and answers each item in
 * order: the JSON text of each answer, and the error codes of those that failed.
 */
async function runBatch(o: KmsRoutesOptions, op: KmsOp, raw: readonly unknown[], signal: AbortSignal): Promise<{ items: string[]; codes: string[] }> {
  const items: string[] = new Array(raw.length)
  const codes: string[] = []
  const fail = (i: number, err: unknown): void => {
    const e = typed(o, err)
    codes.push(e.code)
    items[i] = JSON.stringify({ ok: false, error: e.toJSON() })
  }
  const valid: KmsRequest[] = []
  const at: number[] = []
  for (let i = 0; i < raw.length; i++) {
    try {
      valid.push(parseItem(op, raw[i], `items[${i}]`))
      at.push(i)
    } catch (err) {
      fail(i, err)
    }
  }
  const answers = o.backend.requestBatch(valid, signal)
  const settle = (j: number, r: KmsResult): void => {
    try {
      items[at[j] as number] = `{"ok":true,${answerFields(op, valid[j] as KmsRequest, r)}}`
    } catch (err) {
      fail(at[j] as number, err)
    }
  }
  await Promise.all(answers.map((p, j) => p.then((r) => settle(j, r), (err: unknown) => fail(at[j] as number, err))))
  return { items, codes }
}

function typed(o: KmsRoutesOptions, err: unknown): KeymeshError {
  if (isKeymeshError(err)) return err
  o.logger.error({ err: { message: err instanceof Error ? err.message : String(err) } }, 'KMS batch item failed unexpectedly')
  return agentError('AGENT_ERR_INTERNAL')
}

/**
 * The API's answer for a result, as the JSON members of an object: binary fields
 * as base64 (the result's buffers are wiped once encoded), then key and version
 * when the result has them. A result without the field its operation must
 * return is a control plane that broke the protocol: AGENT_ERR_CP_PROTOCOL.
 */
export function answerFields(op: KmsOp, req: KmsRequest, r: KmsResult): string {
  const plaintext = r.plaintext
  try {
    const meta = (r.key !== undefined ? `,"key":${text(r.key)}` : '') + (r.version !== undefined ? `,"version":${JSON.stringify(r.version)}` : '')
    switch (op) {
      case 'encrypt':
      case 'rewrap':
        return `"ciphertext":${text(need(r.ciphertext, 'ciphertext'))}${meta}`
      case 'decrypt':
        return `"plaintext":"${base64(need(plaintext, 'plaintext'))}"${meta}`
      case 'dropopen':
        return `"chunkKey":"${base64(need(plaintext, 'plaintext'))}"${meta}`
      case 'dropseal':
        return `"senderTerm":"${base64(need(plaintext, 'plaintext'))}"${meta}`
      case 'datakey': {
        const ciphertext = `"ciphertext":${text(need(r.ciphertext, 'ciphertext'))}`
        if (req.wrappedOnly === true) return `${ciphertext}${meta}`
        return `${ciphertext},"plaintext":"${base64(need(plaintext, 'plaintext'))}"${meta}`
      }
      case 'sign':
        return `"signature":${text(need(r.ciphertext, 'ciphertext'))}${meta}`
      case 'hmac':
        return `"mac":${text(need(r.ciphertext, 'ciphertext'))}${meta}`
      case 'verify':
      case 'hmacverify':
        return `"valid":${need(r.valid, 'valid') === true}${meta}`
      default:
        throw agentError('AGENT_ERR_INTERNAL', 'unknown KMS operation')
    }
  } finally {
    plaintext?.fill(0)
  }
}

/** Printable ASCII without a quote or a backslash: what a km1 ciphertext and a key name are. */
const PLAIN_RE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** A JSON string: as it is when nothing in it needs escaping, else through JSON.stringify. */
function text(s: string): string {
  return PLAIN_RE.test(s) ? `"${s}"` : JSON.stringify(s)
}

function need<T>(v: T | undefined, field: string): T {
  if (v === undefined) throw agentError('AGENT_ERR_CP_PROTOCOL', `the KMS answer lacks ${field}`)
  return v
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64')
}
