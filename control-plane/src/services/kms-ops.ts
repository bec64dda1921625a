// The KMS operations, one call each: encrypt, decrypt, rewrap, datakey,
// dropopen, dropseal, sign, verify, hmac and hmacverify
// (protocol/src/messages/kms.ts). A call reads its policy inputs and its
// key material through a scope (kms-scope.ts) shared with the other calls of its
// message, so a batch item and a single request go through the very same checks
// and end with the same codes; kms.ts audits and answers.
//
// Contract:
//   - performKms() asks the scope for its look-up before its first await (the
//     scope relies on it to answer a batch with one read), and otherwise only
//     throws typed errors or suite errors that kms.ts maps.
//   - Nothing here changes the store. Material comes from the scope and is never
//     kept; plaintext that must not leave (rewrap) or was not asked for
//     (datakey with wrappedOnly) is wiped here.
//   - The version to decrypt comes from the km1 header, never by trial.
//   - Drop rules: a context naming 'keymesh:to' is opened (decrypt, rewrap) only by
//     that service; one naming 'keymesh:from' is sealed (encrypt, datakey) only by
//     that service (CP_ERR_NOT_RECIPIENT / CP_ERR_NOT_SENDER, 403). An x25519 drop's
//     header is opened (dropopen) only by its recipient and authenticated (dropseal)
//     only by its sender, always: the header, not an optional context, names them.
//   - No operation returns a raw X25519 result: the drop operations derive from the
//     header they are given (drop-stream.ts), so an answer serves that drop only.
import { timingSafeEqual } from 'node:crypto'

import { formatKeyTag, parseKeyTag, type KeyTag, type TagKind } from '../../../protocol/src/index.js'
import { decodeDropHeader, dropChunkKey, dropSenderTerm, openKm1, parseKm1, sealKm1, withSenderTerm, type DropHeader, type Km1Context } from '../../../protocol/src/index.js'
import { AEAD_TAG_BYTES } from '../../../protocol/src/index.js'
import { MAX_KMS_PLAINTEXT, type KmsBatchItem, type KmsItemReply } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { assertUsable, type KeyUse } from '../key-lifecycle.js'
import type { Right } from '../policy.js'
import type { KeyRecord, KeyType, KeyVersionRecord } from '../store/records.js'
import type { KmsScope } from './kms-scope.js'

export type KmsRequest = KmsBatchItem
export type KmsReply = KmsItemReply
export type KmsResult = NonNullable<KmsReply['result']>

/** Who asks: the agent, speaking for its service. */
export interface KmsCaller {
  readonly agentId: string
  readonly service: string
}

/** What the audit line says of a call; filled in as the call learns it. */
export interface CallFacts {
  key?: string
  version?: number
  toVersion?: number
  reason?: string
}

/** One call's surroundings. */
export interface KmsCall {
  readonly ctx: CpContext
  readonly scope: KmsScope
  readonly caller: KmsCaller
  readonly facts: CallFacts
}

const TO = 'keymesh:to'
const FROM = 'keymesh:from'
const DEFAULT_DATA_KEY_BYTES = 32

interface Loaded {
  readonly key: KeyRecord
  /** The rows of the versions asked for, in the order asked. */
  readonly versions: readonly KeyVersionRecord[]
}

/** Performs one request; the result, or a thrown error for kms.ts to type and audit. */
export function performKms(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  switch (req.op) {
    case 'encrypt':
      return encrypt(call, req)
    case 'decrypt':
      return decrypt(call, req)
    case 'rewrap':
      return rewrap(call, req)
    case 'datakey':
      return datakey(call, req)
    case 'dropopen':
      return dropOpen(call, req)
    case 'dropseal':
      return dropSeal(call, req)
    case 'sign':
      return signMessage(call, req)
    case 'verify':
      return verifySignature(call, req)
    case 'hmac':
      return macMessage(call, req)
    case 'hmacverify':
      return verifyMac(call, req)
  }
}

async function encrypt(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const plaintext = req.plaintext as Uint8Array // required by the schema
  const { key, versions } = await load(call, req.key as string, 'aead', ['encrypt'], (k) => [k.primaryVersion])
  senderRule(call.caller, req.context)
  const v = usable(call, key, versions[0], 'encrypt')
  const ciphertext = call.scope.withMaterial(v, (m) => sealKm1(call.scope.nonceSuite, { key: key.name, version: v.version }, m, plaintext, req.context))
  return { ciphertext, key: key.name, version: v.version }
}

async function decrypt(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const c = parse(call, req)
  const { key, versions } = await load(call, c.key, 'aead', ['decrypt'], () => [c.version])
  recipientRule(call.caller, req.context)
  const v = usable(call, key, versions[0], 'decrypt')
  const plaintext = call.scope.withMaterial(v, (m) => openKm1(call.ctx.suite, c, m, req.context))
  return { plaintext, key: key.name, version: v.version }
}

async function rewrap(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const c = parse(call, req)
  const { key, versions } = await load(call, c.key, 'aead', ['decrypt', 'encrypt'], (k) => [c.version, k.primaryVersion])
  recipientRule(call.caller, req.context)
  const from = usable(call, key, versions[0], 'decrypt')
  const to = usable({ ...call, facts: {} }, key, versions[1], 'encrypt')
  call.facts.toVersion = to.version
  const plaintext = call.scope.withMaterial(from, (m) => openKm1(call.ctx.suite, c, m, req.context))
  try {
    const ciphertext = call.scope.withMaterial(to, (m) => sealKm1(call.scope.nonceSuite, { key: key.name, version: to.version }, m, plaintext, req.context))
    return { ciphertext, key: key.name, version: to.version }
  } finally {
    plaintext.fill(0) // the plaintext never leaves
  }
}

async function datakey(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const { key, versions } = await load(call, req.key as string, 'aead', ['generate-data-key'], (k) => [k.primaryVersion])
  senderRule(call.caller, req.context)
  const v = usable(call, key, versions[0], 'encrypt')
  const dataKey = new Uint8Array(call.ctx.suite.randomBytes(req.bytes ?? DEFAULT_DATA_KEY_BYTES))
  try {
    const ciphertext = call.scope.withMaterial(v, (m) => sealKm1(call.scope.nonceSuite, { key: key.name, version: v.version }, m, dataKey, req.context))
    if (req.wrappedOnly === true) return { ciphertext, key: key.name, version: v.version }
    return { ciphertext, plaintext: dataKey, key: key.name, version: v.version }
  } finally {
    if (req.wrappedOnly === true) dataKey.fill(0)
  }
}

// ---- signatures and MACs --------------------------------------------------------
//
// sign and hmac use the primary version (like encrypt: enabled, primary) and need
// `sign` / `hmac`; verify and hmacverify use the version the text names (like
// decrypt: enabled or decrypt-only, at or above the minimum) and need `verify`
// for both, so a service may check MACs without being able to make them. A text
// that does not verify answers valid: false; the audit line says which.

const SIGNING_TYPES: readonly KeyType[] = ['ed25519', 'ecdsa-p256']

async function signMessage(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const message = req.plaintext as Uint8Array // required by the schema
  const { key, versions } = await load(call, req.key as string, SIGNING_TYPES, ['sign'], (k) => [k.primaryVersion])
  const v = usable(call, key, versions[0], 'encrypt')
  const suite = call.ctx.suite
  const bytes = call.scope.withMaterial(v, (m) => (key.type === 'ed25519' ? suite.ed25519Sign(m, message) : suite.p256Sign(m, message)))
  return { ciphertext: formatKeyTag({ kind: 'signature', key: key.name, version: v.version, bytes }), key: key.name, version: v.version }
}

async function verifySignature(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const tag = parseTag(call, 'signature', req)
  const { key, versions } = await load(call, tag.key, SIGNING_TYPES, ['verify'], () => [tag.version])
  const v = usable(call, key, versions[0], 'decrypt')
  const message = req.plaintext as Uint8Array
  const valid = call.scope.withPublic(v, key.type, (pub) => (key.type === 'ed25519' ? call.ctx.suite.ed25519Verify(pub, message, tag.bytes) : call.ctx.suite.p256Verify(pub, message, tag.bytes)))
  return verdict(call, key, v, valid)
}

async function macMessage(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const message = req.plaintext as Uint8Array
  const { key, versions } = await load(call, req.key as string, ['hmac-sha256'], ['hmac'], (k) => [k.primaryVersion])
  const v = usable(call, key, versions[0], 'encrypt')
  const bytes = call.scope.withMaterial(v, (m) => call.ctx.suite.hmacSha256(m, message))
  return { ciphertext: formatKeyTag({ kind: 'mac', key: key.name, version: v.version, bytes }), key: key.name, version: v.version }
}

async function verifyMac(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const tag = parseTag(call, 'mac', req)
  const { key, versions } = await load(call, tag.key, ['hmac-sha256'], ['verify'], () => [tag.version])
  const v = usable(call, key, versions[0], 'decrypt')
  const message = req.plaintext as Uint8Array
  // Both are 32 bytes (parseKeyTag checked the tag's length): compared in constant time.
  const valid = call.scope.withMaterial(v, (m) => timingSafeEqual(call.ctx.suite.hmacSha256(m, message), tag.bytes))
  return verdict(call, key, v, valid)
}

function verdict(call: KmsCall, key: KeyRecord, v: KeyVersionRecord, valid: boolean): KmsResult {
  if (!valid) call.facts.reason = `${call.facts.reason ?? ''}; did not verify`
  return { valid, key: key.name, version: v.version }
}

/** Parses km1s or km1m text (the request's `ciphertext`), noting its key and version for the audit line. */
function parseTag(call: KmsCall, kind: TagKind, req: KmsRequest): KeyTag {
  const tag = parseKeyTag(kind, req.ciphertext)
  call.facts.key = tag.key
  call.facts.version = tag.version
  return tag
}

/** The x25519 drop header of a dropopen or dropseal request: exactly one whole header. */
function dropHeaderOf(req: KmsRequest): DropHeader {
  const bytes = req.header as Uint8Array // required by the schema
  let decoded
  try {
    decoded = decodeDropHeader(bytes)
  } catch (cause) {
    throw cpError('CP_ERR_BAD_REQUEST', 'header is not a drop header', { cause })
  }
  if (decoded === undefined || decoded.length !== bytes.length) throw cpError('CP_ERR_BAD_REQUEST', 'header is not exactly one drop header')
  if (decoded.header.mode !== 'x25519') throw cpError('CP_ERR_BAD_REQUEST', 'only x25519 drops are opened this way; a kms drop opens with decrypt')
  return decoded.header
}

/**
 * The chunk key of an x25519 drop, for its recipient: X25519 of the recipient key and
 * the ephemeral key, plus the sender term when the header names a sender key, derived
 * with the header as salt. Needs `decrypt` on the recipient key.
 */
async function dropOpen(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const h = dropHeaderOf(req)
  const authenticated = h.senderKey !== undefined && h.senderKey !== ''
  // Both look-ups are asked before the first await (kms-scope.ts).
  const mine = load(call, h.key, 'x25519', ['decrypt'], () => [h.keyVersion])
  const theirs = authenticated ? settled(peek(call, h.senderKey as string, h.senderKeyVersion as number)) : undefined
  const { key, versions } = await mine
  if (h.recipient !== call.caller.service) throw cpError('CP_ERR_NOT_RECIPIENT', `service ${call.caller.service} is not the drop's recipient`)
  const v = usable(call, key, versions[0], 'decrypt')
  // The sender key must still be one the control plane vouches for: a disabled or
  // expiring version (after a compromise, say) verifies nothing, so it opens nothing.
  const senderPublic = theirs === undefined ? undefined : call.scope.withMaterial(unwrap(await theirs), (m) => publicOf(call, m))
  if (authenticated) call.facts.reason = `${call.facts.reason ?? ''}; sender ${h.sender} with key ${h.senderKey} v${h.senderKeyVersion}`
  const suite = call.ctx.suite
  const headerBytes = req.header as Uint8Array
  return call.scope.withMaterial(v, (secret) => {
    const ee = suite.x25519(secret, h.ephemeralPublic as Uint8Array)
    const parts = [ee]
    try {
      let ikm = ee
      if (senderPublic !== undefined) {
        const ss = suite.x25519(secret, senderPublic)
        const term = dropSenderTerm(suite, headerBytes, ss)
        ss.fill(0)
        ikm = withSenderTerm(ee, term)
        parts.push(term, ikm)
      }
      return { plaintext: dropChunkKey(suite, headerBytes, ikm).key, key: key.name, version: v.version }
    } finally {
      for (const p of parts) p.fill(0)
    }
  })
}

/**
 * The sender term of an x25519 drop, for its sender: X25519 of the sender key and the
 * recipient key, derived with the header as salt. Needs `encrypt` on the sender key;
 * the recipient key's version must still hold its material.
 */
async function dropSeal(call: KmsCall, req: KmsRequest): Promise<KmsResult> {
  const h = dropHeaderOf(req)
  if (h.senderKey === undefined || h.senderKey === '') throw cpError('CP_ERR_BAD_REQUEST', 'the header names no sender key to authenticate with')
  const mine = load(call, h.senderKey, 'x25519', ['encrypt'], () => [h.senderKeyVersion as number])
  const theirs = settled(peek(call, h.key, h.keyVersion))
  const { key, versions } = await mine
  if (h.sender !== call.caller.service) throw cpError('CP_ERR_NOT_SENDER', `service ${call.caller.service} is not the drop's sender`)
  const v = usable(call, key, versions[0], 'encrypt')
  const recipientPublic = call.scope.withMaterial(unwrap(await theirs), (m) => publicOf(call, m))
  call.facts.reason = `${call.facts.reason ?? ''}; to ${h.recipient} with key ${h.key} v${h.keyVersion}`
  const suite = call.ctx.suite
  return call.scope.withMaterial(v, (secret) => {
    const ss = suite.x25519(secret, recipientPublic)
    try {
      return { plaintext: dropSenderTerm(suite, req.header as Uint8Array, ss), key: key.name, version: v.version }
    } finally {
      ss.fill(0)
    }
  })
}

/**
 * The version row of another party's x25519 key, for its public half only: no right
 * is needed and the audit facts stay those of the caller's own key. Asks the scope
 * synchronously (see the contract). The version must be usable for decryption (not
 * disabled, not scheduled for destruction): one the control plane no longer vouches
 * for serves no drop. Every way of not being such a key is one answer, so that a
 * caller learns nothing of keys it holds no grant on.
 */
async function peek(call: KmsCall, name: string, version: number): Promise<KeyVersionRecord> {
  const found = await call.scope.lookup(name, call.caller.service, () => [version])
  const v = found?.versions[0]
  if (found === null || found.key.type !== 'x25519' || v === null || v === undefined || v.sealedMaterial === null) {
    throw cpError('CP_ERR_KEY_NOT_FOUND', `no usable x25519 key ${name} v${version}`)
  }
  assertUsable(found.key, v, 'decrypt', call.ctx.clock.now())
  return v
}

/**
 * A look-up started before the first await whose outcome is read later, after awaits
 * that may throw first: its refusal is kept as a value, never left unhandled (an
 * unhandled rejection ends the process).
 */
function settled<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): T {
  if (!r.ok) throw r.error
  return r.value
}

function publicOf(call: KmsCall, secret: Uint8Array): Uint8Array {
  const pair = call.ctx.suite.x25519FromSecret(secret)
  pair.secretKey.fill(0)
  return pair.publicKey
}

/** Parses the km1 header and checks it against the request's key, if any. */
function parse(call: KmsCall, req: KmsRequest): ReturnType<typeof parseKm1> {
  const facts = call.facts
  if (req.key !== undefined) facts.key = req.key
  const c = parseKm1(req.ciphertext)
  facts.key = req.key ?? c.key
  facts.version = c.version
  if (req.key !== undefined && req.key !== c.key) throw cpError('CP_ERR_CIPHERTEXT_KEY', `the request names ${req.key}, the ciphertext ${c.key}`)
  // A body this long would open to more than a reply may carry; refuse before opening.
  if (c.sealed.length - AEAD_TAG_BYTES > MAX_KMS_PLAINTEXT) throw cpError('CP_ERR_KMS_TOO_LARGE', `more than ${MAX_KMS_PLAINTEXT} bytes`)
  return c
}

/**
 * One consistent read of the key, the caller's grant and the versions `pick`
 * names (through the scope); then existence, type (one of `type`) and every right in `rights`
 * (all must hold). Asks the scope synchronously: see the contract.
 */
async function load(call: KmsCall, name: string, type: KeyType | readonly KeyType[], rights: readonly Right[], pick: (k: KeyRecord) => number[]): Promise<Loaded> {
  const { caller, facts } = call
  facts.key = name
  const found = await call.scope.lookup(name, caller.service, pick)
  if (found === null) throw cpError('CP_ERR_KEY_NOT_FOUND', name)
  const { key, grant, versions, wanted } = found
  if (facts.version === undefined) facts.version = wanted[0]
  const types: readonly KeyType[] = typeof type === 'string' ? [type] : type
  if (!types.includes(key.type)) throw cpError('CP_ERR_KEY_TYPE', `${name} is an ${key.type} key; this operation needs an ${types.join(' or ')} key`)
  const reasons: string[] = []
  for (const right of rights) {
    const d = call.scope.authorize(grant, caller.service, name, right)
    if (!d.allow) throw cpError('CP_ERR_FORBIDDEN', d.reason)
    reasons.push(d.reason)
  }
  facts.reason = reasons.join('; ')
  versions.forEach((v, i) => {
    if (v === null) throw cpError('CP_ERR_KEY_VERSION_NOT_FOUND', `${name} v${wanted[i]}`)
  })
  return { key, versions: versions as KeyVersionRecord[] }
}

function usable(call: KmsCall, key: KeyRecord, v: KeyVersionRecord | undefined, use: KeyUse): KeyVersionRecord {
  if (v === undefined) throw cpError('CP_ERR_INTERNAL', 'version row missing')
  call.facts.version ??= v.version
  assertUsable(key, v, use, call.ctx.clock.now())
  return v
}

// The messages name the caller only: the context is never repeated (it may be secret).
function senderRule(caller: KmsCaller, context: Km1Context | undefined): void {
  const from = context?.[FROM]
  if (from !== undefined && from !== caller.service) throw cpError('CP_ERR_NOT_SENDER', `service ${caller.service} is not the sender named in the context`)
}

function recipientRule(caller: KmsCaller, context: Km1Context | undefined): void {
  const to = context?.[TO]
  if (to !== undefined && to !== caller.service) throw cpError('CP_ERR_NOT_RECIPIENT', `service ${caller.service} is not the recipient named in the context`)
}
