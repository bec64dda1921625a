// KMS operations an agent performs for its service over the control session:
// encrypt, decrypt, rewrap, datakey and agree (protocol/src/messages/kms.ts).
// The caller is the agent's service; the grants of that service on the key decide.
//
// Per call: the key, the caller's grant and the version rows (read together with
// other calls' by kms-policy.ts); the policy and lifecycle checks (policy.ts
// authorizeService, key-lifecycle.ts assertUsable); the material unsealed, used
// and wiped; then the call's audit line, committed by the group commit of
// kms-audit.ts. Fail closed: the reply leaves this module only after its audit
// line is committed; when the commit fails the caller gets CP_ERR_AUDIT and no
// result, whatever the call computed.
//
// Contract:
//   - handle() never rejects: every outcome — refusal, bad input, store or audit
//     failure — is a reply with a typed code, and no call changes the store
//     except by its audit entry.
//   - Every call is audited, allow or deny, as its own line: key, version, op,
//     the caller's service, the context's hash (ciphertext.ts contextHash), the
//     outcome and its reason.
//     Never the data, the plaintext, the ciphertext, a public key or the context.
//   - The version to decrypt comes from the km1 header, never by trial.
//   - Drop rules: a context naming 'keymesh:to' is opened (decrypt, rewrap, agree)
//     only by that service; one naming 'keymesh:from' is sealed (encrypt, datakey)
//     only by that service (CP_ERR_NOT_RECIPIENT / CP_ERR_NOT_SENDER, 403).
import { contextHash, openKm1, parseKm1, sealKm1, type Km1Context } from '../../../protocol/src/ciphertext.js'
import { AEAD_TAG_BYTES } from '../../../protocol/src/crypto/suite.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/errors.js'
import { MAX_KMS_PLAINTEXT, type KmsRequestMessage, type KmsResponseMessage } from '../../../protocol/src/messages/index.js'
import { actorName, type CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { assertUsable, type KeyUse } from '../key-lifecycle.js'
import { authorizeService, type Right } from '../policy.js'
import type { KeyRecord, KeyType, KeyVersionRecord } from '../store/records.js'
import { KmsAuditLog, type KmsAuditOptions } from './kms-audit.js'
import { PolicyReader } from './kms-policy.js'
import { openMaterial } from './material.js'

export type KmsRequest = Omit<KmsRequestMessage, 'type'>
export type KmsReply = Omit<KmsResponseMessage, 'type'>
export type KmsResult = NonNullable<KmsReply['result']>

/** Who asks: the agent, speaking for its service. */
export interface KmsCaller {
  readonly agentId: string
  readonly service: string
}

export interface KmsOptions {
  /** Requests one agent session may have unanswered; more are refused with CP_ERR_KMS_BUSY. */
  readonly maxInFlightPerAgent?: number
  readonly audit?: KmsAuditOptions
}

/** Enough for 50,000 items/s with a 25 ms commit, and bounds a session's memory (each holds ≤ 32 KiB). */
export const DEFAULT_MAX_KMS_IN_FLIGHT = 2048

const TO = 'keymesh:to'
const FROM = 'keymesh:from'
const DEFAULT_DATA_KEY_BYTES = 32
const MAX_ERROR_TEXT = 512

/** What the audit entry says of a call; filled in as the call learns it. */
interface Facts {
  key?: string
  version?: number
  toVersion?: number
  reason?: string
}

interface Loaded {
  readonly key: KeyRecord
  /** The rows of the versions asked for, in the order asked. */
  readonly versions: readonly KeyVersionRecord[]
}

export class KmsService {
  readonly #ctx: CpContext
  readonly audit: KmsAuditLog
  readonly policy: PolicyReader
  readonly maxInFlightPerAgent: number

  constructor(ctx: CpContext, options: KmsOptions = {}) {
    this.#ctx = ctx
    this.audit = new KmsAuditLog(ctx, options.audit)
    this.policy = new PolicyReader(ctx.store)
    this.maxInFlightPerAgent = options.maxInFlightPerAgent ?? DEFAULT_MAX_KMS_IN_FLIGHT
  }

  /** Performs, audits and answers one request; resolves after its audit line is committed. */
  async handle(caller: KmsCaller, req: KmsRequest): Promise<KmsReply> {
    const facts: Facts = {}
    let reply: KmsReply
    let error: KeymeshError | undefined
    try {
      reply = { id: req.id, ok: true, result: await this.#perform(caller, req, facts) }
    } catch (err) {
      error = this.#typed(err)
      reply = { id: req.id, ok: false, error: { code: error.code, message: error.message.slice(0, MAX_ERROR_TEXT) } }
    }
    try {
      await this.audit.record({
        actor: actorName({ kind: 'agent', id: caller.agentId, service: caller.service }),
        service: caller.service,
        op: req.op,
        target: facts.key !== undefined ? `key:${facts.key}` : 'key:(unknown)',
        outcome: error === undefined ? 'ok' : error.status === 401 || error.status === 403 ? 'deny' : 'error',
        reason: error === undefined ? (facts.reason ?? 'ok') : `${error.code}: ${error.message}`,
        requestId: req.id,
        keyVersion: facts.version ?? null,
        ...(facts.toVersion !== undefined ? { toVersion: facts.toVersion } : {}),
        contextHash: this.#contextHash(req.context),
        code: error?.code ?? null,
      })
    } catch (err) {
      reply.result?.plaintext?.fill(0)
      const audit = isKeymeshError(err, 'CP_ERR_AUDIT') ? err : cpError('CP_ERR_AUDIT')
      this.#ctx.logger.error({ err: { code: audit.code }, agentId: caller.agentId, op: req.op }, 'KMS call not audited; answered CP_ERR_AUDIT')
      return { id: req.id, ok: false, error: { code: audit.code, message: audit.message.slice(0, MAX_ERROR_TEXT) } }
    }
    return reply
  }

  /**
   * The reply for a request refused because its session has too many in flight.
   * Load shedding, not a decision about a key: it is logged, not audited, so a
   * flood cannot grow the audit log faster than the calls it serves.
   */
  busy(req: Pick<KmsRequest, 'id'>): KmsReply {
    const e = cpError('CP_ERR_KMS_BUSY', `at most ${this.maxInFlightPerAgent} per agent`)
    return { id: req.id, ok: false, error: { code: e.code, message: e.message } }
  }

  #perform(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    switch (req.op) {
      case 'encrypt':
        return this.#encrypt(caller, req, facts)
      case 'decrypt':
        return this.#decrypt(caller, req, facts)
      case 'rewrap':
        return this.#rewrap(caller, req, facts)
      case 'datakey':
        return this.#datakey(caller, req, facts)
      case 'agree':
        return this.#agree(caller, req, facts)
    }
  }

  async #encrypt(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    const plaintext = req.plaintext as Uint8Array // required by the schema
    const { key, versions } = await this.#load(caller, req.key as string, 'aead', ['encrypt'], (k) => [k.primaryVersion], facts)
    senderRule(caller, req.context)
    const v = this.#usable(key, versions[0], 'encrypt', facts)
    const ciphertext = this.#withMaterial(v, (m) => sealKm1(this.#ctx.suite, { key: key.name, version: v.version }, m, plaintext, req.context))
    return { ciphertext, key: key.name, version: v.version }
  }

  async #decrypt(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    const c = this.#parse(req, facts)
    const { key, versions } = await this.#load(caller, c.key, 'aead', ['decrypt'], () => [c.version], facts)
    recipientRule(caller, req.context)
    const v = this.#usable(key, versions[0], 'decrypt', facts)
    const plaintext = this.#withMaterial(v, (m) => openKm1(this.#ctx.suite, c, m, req.context))
    return { plaintext, key: key.name, version: v.version }
  }

  async #rewrap(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    const c = this.#parse(req, facts)
    const { key, versions } = await this.#load(caller, c.key, 'aead', ['decrypt', 'encrypt'], (k) => [c.version, k.primaryVersion], facts)
    recipientRule(caller, req.context)
    const from = this.#usable(key, versions[0], 'decrypt', facts)
    const to = this.#usable(key, versions[1], 'encrypt', {})
    facts.toVersion = to.version
    const plaintext = this.#withMaterial(from, (m) => openKm1(this.#ctx.suite, c, m, req.context))
    try {
      const ciphertext = this.#withMaterial(to, (m) => sealKm1(this.#ctx.suite, { key: key.name, version: to.version }, m, plaintext, req.context))
      return { ciphertext, key: key.name, version: to.version }
    } finally {
      plaintext.fill(0) // the plaintext never leaves
    }
  }

  async #datakey(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    const { key, versions } = await this.#load(caller, req.key as string, 'aead', ['generate-data-key'], (k) => [k.primaryVersion], facts)
    senderRule(caller, req.context)
    const v = this.#usable(key, versions[0], 'encrypt', facts)
    const dataKey = new Uint8Array(this.#ctx.suite.randomBytes(req.bytes ?? DEFAULT_DATA_KEY_BYTES))
    try {
      const ciphertext = this.#withMaterial(v, (m) => sealKm1(this.#ctx.suite, { key: key.name, version: v.version }, m, dataKey, req.context))
      if (req.wrappedOnly === true) return { ciphertext, key: key.name, version: v.version }
      return { ciphertext, plaintext: dataKey, key: key.name, version: v.version }
    } finally {
      if (req.wrappedOnly === true) dataKey.fill(0)
    }
  }

  async #agree(caller: KmsCaller, req: KmsRequest, facts: Facts): Promise<KmsResult> {
    const publicKey = req.publicKey as Uint8Array // required by the schema
    const { key, versions } = await this.#load(caller, req.key as string, 'x25519', ['decrypt'], (k) => [req.version ?? k.primaryVersion], facts)
    recipientRule(caller, req.context)
    const v = this.#usable(key, versions[0], 'decrypt', facts)
    const shared = this.#withMaterial(v, (secret) => {
      try {
        return this.#ctx.suite.x25519(secret, publicKey)
      } finally {
        this.#ctx.suite.x25519Forget(secret)
      }
    })
    return { plaintext: shared, key: key.name, version: v.version }
  }

  /** Parses the km1 header and checks it against the request's key, if any. */
  #parse(req: KmsRequest, facts: Facts): ReturnType<typeof parseKm1> {
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
   * names; then existence, type and every right in `rights` (all must hold).
   */
  async #load(caller: KmsCaller, name: string, type: KeyType, rights: readonly Right[], pick: (k: KeyRecord) => number[], facts: Facts): Promise<Loaded> {
    facts.key = name
    const found = await this.policy.load(name, caller.service, pick)
    if (found === null) throw cpError('CP_ERR_KEY_NOT_FOUND', name)
    const { key, grant, versions, wanted } = found
    if (facts.version === undefined) facts.version = wanted[0]
    if (key.type !== type) throw cpError('CP_ERR_KEY_TYPE', `${name} is an ${key.type} key; this operation needs an ${type} key`)
    const reasons: string[] = []
    for (const right of rights) {
      const d = authorizeService(grant ? [grant] : [], caller.service, name, right)
      if (!d.allow) throw cpError('CP_ERR_FORBIDDEN', d.reason)
      reasons.push(d.reason)
    }
    facts.reason = reasons.join('; ')
    versions.forEach((v, i) => {
      if (v === null) throw cpError('CP_ERR_KEY_VERSION_NOT_FOUND', `${name} v${wanted[i]}`)
    })
    return { key, versions: versions as KeyVersionRecord[] }
  }

  #usable(key: KeyRecord, v: KeyVersionRecord | undefined, use: KeyUse, facts: Facts): KeyVersionRecord {
    if (v === undefined) throw cpError('CP_ERR_INTERNAL', 'version row missing')
    facts.version ??= v.version
    assertUsable(key, v, use, this.#ctx.clock.now())
    return v
  }

  /** Opens the version's material for `fn` and wipes it afterwards, whatever happens. */
  #withMaterial<T>(v: KeyVersionRecord, fn: (material: Uint8Array) => T): T {
    const material = openMaterial(this.#ctx, v)
    try {
      return fn(material)
    } finally {
      material.fill(0)
    }
  }

  /** The schema has checked the context; should hashing fail anyway, the call is still audited. */
  #contextHash(context: Km1Context | undefined): string {
    try {
      return contextHash(this.#ctx.suite, context)
    } catch {
      return '(unhashable)'
    }
  }

  /** Suite errors become the KMS's own codes; anything untyped is logged and answered as internal. */
  #typed(err: unknown): KeymeshError {
    if (!isKeymeshError(err)) {
      this.#ctx.logger.error({ err: { message: err instanceof Error ? err.message : 'unknown' } }, 'KMS call failed unexpectedly')
      return cpError('CP_ERR_INTERNAL')
    }
    if (err.code === 'PROTO_ERR_DECRYPT') return cpError('CP_ERR_DECRYPT')
    if (err.code === 'PROTO_ERR_LOW_ORDER_POINT') return cpError('CP_ERR_PUBLIC_KEY')
    return err
  }
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

// One service per control plane, so every agent's calls share one group commit.
// Kept beside the context rather than in it, as the context predates the KMS.
const services = new WeakMap<CpContext, KmsService>()

/** The control plane's KMS service, made on first use with default options. */
export function kmsService(ctx: CpContext): KmsService {
  let s = services.get(ctx)
  if (s === undefined) {
    s = new KmsService(ctx)
    services.set(ctx, s)
  }
  return s
}

/** Replaces the control plane's KMS service (tests: other limits); call before agents connect. */
export function installKmsService(ctx: CpContext, service: KmsService): void {
  services.set(ctx, service)
}
