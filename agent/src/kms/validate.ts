// Request bodies of the data API, checked and turned into KMS requests.
//
//   POST /v1/encrypt   {key, plaintext, context?}
//   POST /v1/decrypt   {ciphertext, key?, context?}
//   POST /v1/rewrap    {ciphertext, key?, context?}
//   POST /v1/datakey   {key, context?, wrappedOnly?, bytes?}
//   POST /v1/dropopen  {header}   (an x25519 drop's header, base64: its chunk key, for its recipient)
//   POST /v1/dropseal  {header}   (an x25519 drop's header, base64: its sender term, for its sender)
//   POST /v1/sign         {key, message}      (an ed25519 or ecdsa-p256 key)
//   POST /v1/verify       {signature, message}
//   POST /v1/hmac         {key, message}      (an hmac-sha256 key)
//   POST /v1/hmac/verify  {mac, message}
//   any of them        {items: [item, ...]}  (a batch of up to MAX_BATCH_ITEMS)
//
// The fields are those of the kms.request message (protocol/src/messages/kms.ts),
// so the message schema is the one set of rules: base64 canonical, names by the
// naming rules, context bounded. The signature routes name their fields for what
// they hold (message, signature, mac); on the wire they travel as plaintext and
// ciphertext (API_NAMES), and errors name them as the caller wrote them. Errors name the field (with its item index in
// a batch: `items[3].plaintext`) and never quote its value.
//
// Contract: a field that is missing, unknown or malformed is AGENT_ERR_BAD_REQUEST
// (400); plaintext over MAX_KMS_PLAINTEXT bytes, or ciphertext text over
// MAX_KMS_CIPHERTEXT_TEXT characters, is AGENT_ERR_TOO_LARGE (413) with the limit,
// found before anything is decoded; a batch over MAX_BATCH_ITEMS is
// AGENT_ERR_TOO_LARGE too.
import { isKeymeshError } from '../../../protocol/src/index.js'
import { decodeValue } from '../../../protocol/src/index.js'
import { decodeKmsRequestFields, kmsRequestSchema, MAX_KMS_CIPHERTEXT_TEXT, MAX_KMS_PLAINTEXT, MAX_PLAINTEXT_B64, type KmsOp } from '../../../protocol/src/index.js'
import { agentError } from '../errors.js'
import type { KmsRequest } from './multiplexer.js'

/** Items one batch call may carry. */
export const MAX_BATCH_ITEMS = 1000

/** The fields each operation takes in a body (and in its kms.request). */
const FIELDS: Readonly<Record<KmsOp, { readonly required: readonly string[]; readonly optional: readonly string[] }>> = {
  encrypt: { required: ['key', 'plaintext'], optional: ['context'] },
  decrypt: { required: ['ciphertext'], optional: ['key', 'context'] },
  rewrap: { required: ['ciphertext'], optional: ['key', 'context'] },
  datakey: { required: ['key'], optional: ['context', 'wrappedOnly', 'bytes'] },
  dropopen: { required: ['header'], optional: [] },
  dropseal: { required: ['header'], optional: [] },
  sign: { required: ['key', 'plaintext'], optional: [] },
  verify: { required: ['ciphertext', 'plaintext'], optional: [] },
  hmac: { required: ['key', 'plaintext'], optional: [] },
  hmacverify: { required: ['ciphertext', 'plaintext'], optional: [] },
}

/** The signature routes' field names for the kms.request fields that carry them. */
const API_NAMES: Partial<Readonly<Record<KmsOp, Readonly<Record<string, string>>>>> = {
  sign: { message: 'plaintext' },
  hmac: { message: 'plaintext' },
  verify: { signature: 'ciphertext', message: 'plaintext' },
  hmacverify: { mac: 'ciphertext', message: 'plaintext' },
}

export type ParsedBody =
  | { readonly kind: 'single'; readonly request: KmsRequest }
  | { readonly kind: 'batch'; readonly items: readonly unknown[] }

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Splits a body into one request (checked) or a batch (items checked one by one with parseItem). */
export function parseBody(op: KmsOp, body: unknown): ParsedBody {
  if (isPlainObject(body) && Object.hasOwn(body, 'items')) {
    const items = body['items']
    if (Object.keys(body).length !== 1) throw agentError('AGENT_ERR_BAD_REQUEST', 'a batch body holds only items')
    if (!Array.isArray(items)) throw agentError('AGENT_ERR_BAD_REQUEST', 'items: expected an array')
    if (items.length > MAX_BATCH_ITEMS) throw agentError('AGENT_ERR_TOO_LARGE', `items: a batch holds at most ${MAX_BATCH_ITEMS} items`)
    return { kind: 'batch', items }
  }
  return { kind: 'single', request: parseItem(op, body, '') }
}

/** One item (or a single body) as a KMS request; `path` prefixes field names in errors. */
export function parseItem(op: KmsOp, value: unknown, path: string): KmsRequest {
  const names = API_NAMES[op]
  if (names !== undefined && isPlainObject(value)) return parseNamed(op, names, value, path)
  // The usual shapes pass the schema's own rules without the walk (kms.ts); the
  // rest, and every error, come from the checks below.
  return decodeKmsRequestFields(op, value) ?? checkItem(op, value, path)
}

/** A signature route's body: its fields renamed to the wire's, checked, and errors renamed back. */
function parseNamed(op: KmsOp, names: Readonly<Record<string, string>>, value: Record<string, unknown>, path: string): KmsRequest {
  const wire: Record<string, unknown> = {}
  const back = new Map(Object.entries(names).map(([name, to]) => [to, name]))
  for (const [name, v] of Object.entries(value)) {
    const to = names[name]
    // The wire's own names are not fields of these routes: `plaintext` is unknown to /v1/sign.
    if (to === undefined && back.has(name)) throw agentError('AGENT_ERR_BAD_REQUEST', `${path === '' ? name : `${path}.${name}`}: unknown field for ${op}`)
    wire[to ?? name] = v
  }
  try {
    return decodeKmsRequestFields(op, wire) ?? checkItem(op, wire, path)
  } catch (err) {
    if (!isKeymeshError(err) || err.detail === undefined) throw err
    const detail = err.detail.replace(/(^|\.)(plaintext|ciphertext)(?=:)/g, (_m, dot: string, field: string) => `${dot}${back.get(field) ?? field}`)
    throw agentError(err.code as Parameters<typeof agentError>[0], detail)
  }
}

function checkItem(op: KmsOp, value: unknown, path: string): KmsRequest {
  const at = (field: string): string => (path === '' ? field : `${path}.${field}`)
  if (!isPlainObject(value)) throw agentError('AGENT_ERR_BAD_REQUEST', `${path === '' ? 'body' : path}: expected a JSON object`)
  const spec = FIELDS[op]
  for (const name of Object.keys(value)) {
    if (!spec.required.includes(name) && !spec.optional.includes(name)) {
      // The name is the caller's text: bounded, not echoed when odd.
      const shown = name.length <= 32 && /^[A-Za-z0-9_.-]+$/.test(name) ? name : '?'
      throw agentError('AGENT_ERR_BAD_REQUEST', `${at(shown)}: unknown field for ${op}`)
    }
  }
  for (const name of spec.required) {
    if (value[name] === undefined) throw agentError('AGENT_ERR_BAD_REQUEST', `${at(name)}: missing`)
  }
  const plaintext = value['plaintext']
  if (typeof plaintext === 'string' && base64Length(plaintext) > MAX_KMS_PLAINTEXT) {
    throw agentError('AGENT_ERR_TOO_LARGE', `${at('plaintext')}: at most ${MAX_KMS_PLAINTEXT} bytes`)
  }
  const ciphertext = value['ciphertext']
  if (typeof ciphertext === 'string' && ciphertext.length > MAX_KMS_CIPHERTEXT_TEXT) {
    throw agentError('AGENT_ERR_TOO_LARGE', `${at('ciphertext')}: at most ${MAX_KMS_CIPHERTEXT_TEXT} characters`)
  }
  let decoded: Record<string, unknown>
  try {
    decoded = decodeValue(kmsRequestSchema, { ...value, id: 1, op }, path) as Record<string, unknown>
  } catch (err) {
    // PROTO_ERR_MESSAGE_FIELD's detail is "<path>: <what is wrong>", never the value.
    if (isKeymeshError(err) && err.detail !== undefined) throw agentError('AGENT_ERR_BAD_REQUEST', err.detail)
    throw agentError('AGENT_ERR_BAD_REQUEST', `${path === '' ? 'body' : path}: not a valid ${op} request`)
  }
  const { id: _id, ...request } = decoded
  return request as KmsRequest
}

/** Bytes that base64 text of this length decodes to (an upper bound for text that is not canonical). */
function base64Length(text: string): number {
  if (text.length > MAX_PLAINTEXT_B64) return Number.MAX_SAFE_INTEGER
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0
  return Math.floor(text.length / 4) * 3 + ((text.length % 4) * 3) / 4 - pad
}
