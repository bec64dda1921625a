// The data API's routes on the agent's local API: encrypt, decrypt, rewrap,
// datakey and agree, single or batched, each performed by the control plane
// through the control session as this agent's service (the control plane checks
// the grants and audits every call).
//
//   POST /v1/encrypt  → {ciphertext, key, version}
//   POST /v1/decrypt  → {plaintext, key, version}
//   POST /v1/rewrap   → {ciphertext, key, version}      (the plaintext never leaves the control plane)
//   POST /v1/datakey  → {ciphertext, plaintext?, key, version}   (no plaintext with wrappedOnly)
//   POST /v1/agree    → {secret, key, version}
//   {items: [...]}    → {items: [{ok: true, ...answer} | {ok: false, error: {code, message}}]}, in order
//
// Bodies are in validate.ts. Binary fields are canonical base64.
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

import { isKeymeshError, type KeymeshError } from '../../../protocol/src/errors.js'
import { KMS_OPS, type KmsOp } from '../../../protocol/src/messages/index.js'
import type { ApiRequest, ApiResponse, ApiRoute } from '../api/routes.js'
import { agentError } from '../errors.js'
import type { KmsRequest, KmsResult } from './multiplexer.js'
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

type ItemAnswer = { ok: true } & Record<string, unknown>
type ItemFailure = { ok: false; error: { code: string; message: string } }

/** The five routes, one per operation; each takes a single body or a batch. */
export function kmsRoutes(o: KmsRoutesOptions): ApiRoute[] {
  return KMS_OPS.map((op) => ({
    method: 'POST',
    path: `/v1/${op}`,
    maxBodyBytes: BATCH_BODY_LIMIT,
    handler: (req: ApiRequest) => handle(o, op, req),
  }))
}

async function handle(o: KmsRoutesOptions, op: KmsOp, req: ApiRequest): Promise<ApiResponse> {
  const parsed = parseBody(op, req.body)
  if (parsed.kind === 'single') {
    const key = parsed.request.key
    try {
      const body = answer(op, parsed.request, await o.backend.request(parsed.request, req.signal))
      o.logger.debug({ op, key: body['key'] ?? key }, 'KMS call answered')
      return { body }
    } catch (err) {
      o.logger.debug({ op, key, code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'KMS call refused')
      throw err
    }
  }
  if (!o.backend.connected) throw agentError('AGENT_ERR_CP_UNREACHABLE', 'the agent is not connected to the control plane')
  const items = await runBatch(o, op, parsed.items, req.signal)
  const failed = items.filter((r) => !r.ok) as ItemFailure[]
  const codes = [...new Set(failed.map((r) => r.error.code))].slice(0, 8)
  o.logger.debug({ op, items: items.length, failed: failed.length, ...(codes.length > 0 ? { codes } : {}) }, 'KMS batch answered')
  return { body: { items } }
}

/** Checks every item, sends the valid ones together, and answers each item in order. */
async function runBatch(o: KmsRoutesOptions, op: KmsOp, raw: readonly unknown[], signal: AbortSignal): Promise<Array<ItemAnswer | ItemFailure>> {
  const out: Array<ItemAnswer | ItemFailure | undefined> = new Array(raw.length)
  const valid: KmsRequest[] = []
  const at: number[] = []
  raw.forEach((item, i) => {
    try {
      valid.push(parseItem(op, item, `items[${i}]`))
      at.push(i)
    } catch (err) {
      out[i] = failure(o, err)
    }
  })
  const answers = o.backend.requestBatch(valid, signal)
  await Promise.all(
    answers.map(async (p, j) => {
      const req = valid[j] as KmsRequest
      try {
        out[at[j] as number] = { ok: true, ...answer(op, req, await p) }
      } catch (err) {
        out[at[j] as number] = failure(o, err)
      }
    }),
  )
  return out as Array<ItemAnswer | ItemFailure>
}

function failure(o: KmsRoutesOptions, err: unknown): ItemFailure {
  return { ok: false, error: typed(o, err).toJSON() }
}

function typed(o: KmsRoutesOptions, err: unknown): KeymeshError {
  if (isKeymeshError(err)) return err
  o.logger.error({ err: { message: err instanceof Error ? err.message : String(err) } }, 'KMS batch item failed unexpectedly')
  return agentError('AGENT_ERR_INTERNAL')
}

/**
 * The API's answer for a result: binary fields as base64 (the result's buffers are
 * wiped once encoded). A result without the field its operation must return is a
 * control plane that broke the protocol: AGENT_ERR_CP_PROTOCOL.
 */
function answer(op: KmsOp, req: KmsRequest, r: KmsResult): Record<string, unknown> {
  const plaintext = r.plaintext
  try {
    const meta = { ...(r.key !== undefined ? { key: r.key } : {}), ...(r.version !== undefined ? { version: r.version } : {}) }
    switch (op) {
      case 'encrypt':
      case 'rewrap':
        return { ciphertext: need(r.ciphertext, 'ciphertext'), ...meta }
      case 'decrypt':
        return { plaintext: base64(need(plaintext, 'plaintext')), ...meta }
      case 'agree':
        return { secret: base64(need(plaintext, 'plaintext')), ...meta }
      case 'datakey': {
        const ciphertext = need(r.ciphertext, 'ciphertext')
        if (req.wrappedOnly === true) return { ciphertext, ...meta }
        return { ciphertext, plaintext: base64(need(plaintext, 'plaintext')), ...meta }
      }
      default:
        throw agentError('AGENT_ERR_INTERNAL', 'unknown KMS operation')
    }
  } finally {
    plaintext?.fill(0)
  }
}

function need<T>(v: T | undefined, field: string): T {
  if (v === undefined) throw agentError('AGENT_ERR_CP_PROTOCOL', `the KMS answer lacks ${field}`)
  return v
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64')
}
