// Who may do what: operator roles × admin operations, per-key service grants,
// service-to-service intentions, and the form and hashing of bearer tokens.
// Pure decisions: every function takes the facts and returns a Decision whose
// reason is fit for a 403 body and the audit log — it names roles, services, keys
// and rights, never a token or key material. Everything not allowed is denied.
import { timingSafeEqual } from 'node:crypto'

import type { CryptoSuite } from '../../protocol/src/index.js'
import { cpError } from './errors.js'
import { OPERATOR_ROLES, RIGHTS, type GrantRecord, type IntentionRecord, type OperatorRole, type Right } from './store/records.js'

// Roles and rights are declared once, beside the rows that hold them.
export { OPERATOR_ROLES, RIGHTS, type OperatorRole, type Right } from './store/records.js'

export interface Decision {
  readonly allow: boolean
  readonly reason: string
}

const allow = (reason: string): Decision => ({ allow: true, reason })
const deny = (reason: string): Decision => ({ allow: false, reason })

// ---- Operators ----------------------------------------------------------------

/** Every admin API operation. `key.state` covers enable, decrypt-only, disable, schedule-destroy and cancel. */
export const OPERATIONS = [
  'key.create', 'key.get', 'key.list', 'key.public', 'key.rotate', 'key.update', 'key.state', 'key.grant', 'key.import',
  'intention.allow', 'intention.deny', 'intention.remove', 'intention.list',
  'pair.rotate', 'pair.list',
  'join-token.create', 'join-token.list', 'join-token.revoke',
  'agents.list', 'agents.revoke',
  'token.create', 'token.list', 'token.revoke',
  'audit.read', 'audit.verify', 'audit.export',
  'log.level',
  'backup.create',
  'custody.seal', 'custody.rekey',
  'console.read', 'console.session', 'console.link',
] as const
export type Operation = (typeof OPERATIONS)[number]

// Reads that reveal no secret: an auditor must see what exists to judge the log.
const READS: ReadonlySet<string> = new Set(['key.get', 'key.list', 'key.public', 'intention.list', 'pair.list', 'agents.list', 'join-token.list'])
const AUDIT: ReadonlySet<string> = new Set(['audit.read', 'audit.verify', 'audit.export'])
// Minting operator tokens is minting roles; only an admin may, or an operator could make an admin.
const TOKENS: ReadonlySet<string> = new Set(['token.create', 'token.list', 'token.revoke'])
// Granting a right on a key and minting a service identity (a join token) together are
// the power to use every key: an operator who could do both would enrol an agent of a
// service it names, grant that service decrypt, and read everything. Both are admin-only,
// so an operator token alone never obtains decrypt on a key.
const ACCESS: ReadonlySet<string> = new Set(['key.grant', 'join-token.create', 'join-token.revoke'])

// A backup is the whole installation: every key (sealed), every token hash, the whole log.
const BACKUP: ReadonlySet<string> = new Set(['backup.create'])

// The console's own (ui/): its views, which read only what the reads above do, one's own
// session and one's own sign-in links. Every role may; what a view offers to change
// is decided by the change's own operation.
const CONSOLE: ReadonlySet<string> = new Set(['console.read', 'console.session', 'console.link'])

const isRole = (r: string): r is OperatorRole => (OPERATOR_ROLES as readonly string[]).includes(r)
// Sealing stops the service and rekeying makes new shares: admin-only.
const CUSTODY: ReadonlySet<string> = new Set(['custody.seal', 'custody.rekey'])
const isOperation = (op: string): op is Operation => (OPERATIONS as readonly string[]).includes(op)

/**
 * admin: everything. operator: everything but operator-token management, grants, join tokens and backups.
 * auditor: the reads above and the audit log, nothing that changes state.
 * Role and operation are checked at run time too: both may come from a stored row or a route table.
 */
export function authorizeOperator(role: OperatorRole, op: Operation): Decision {
  if (!isRole(role)) return deny(`unknown role ${JSON.stringify(role)}`)
  if (!isOperation(op)) return deny(`unknown operation ${JSON.stringify(op)}`)
  if (role === 'admin') return allow(`role admin may ${op}`)
  if (role === 'operator') {
    if (TOKENS.has(op)) return deny(`role operator may not ${op}: token management is admin-only`)
    if (ACCESS.has(op)) return deny(`role operator may not ${op}: grants and join tokens are admin-only`)
    if (BACKUP.has(op)) return deny(`role operator may not ${op}: backups are admin-only`)
    if (CUSTODY.has(op)) return deny(`role operator may not ${op}: sealing and rekeying are admin-only`)
    return allow(`role operator may ${op}`)
  }
  return READS.has(op) || AUDIT.has(op) || CONSOLE.has(op)
    ? allow(`role auditor may ${op}`)
    : deny(`role auditor may not ${op}: auditors are read-only`)
}

// ---- Service grants -------------------------------------------------------------

// Rights are separate, none implying another (as in AWS KMS and Vault transit): a partner
// may hold `encrypt` without `decrypt`, and `manage` (state, grants) does not confer use.
export type Grant = Pick<GrantRecord, 'keyName' | 'service' | 'rights'>

/** Parses `encrypt,decrypt,…` as the CLI's `--allow` takes it; unknown or empty → CP_ERR_BAD_REQUEST. */
export function parseRights(text: string): Right[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (parts.length === 0) throw cpError('CP_ERR_BAD_REQUEST', 'no rights given')
  for (const p of parts) {
    if (!(RIGHTS as readonly string[]).includes(p)) {
      throw cpError('CP_ERR_BAD_REQUEST', `unknown right ${JSON.stringify(p)}; rights are ${RIGHTS.join(', ')}`)
    }
  }
  return [...new Set(parts as Right[])]
}

/** Several grants for one (service, key) add up. Default deny. */
export function authorizeService(grants: readonly Grant[], service: string, keyName: string, right: Right): Decision {
  const held = new Set(grants.filter((g) => g.service === service && g.keyName === keyName).flatMap((g) => g.rights))
  if (held.has(right)) return allow(`service ${service} holds ${right} on key ${keyName}`)
  if (held.size === 0) return deny(`service ${service} has no grant on key ${keyName}`)
  const has = RIGHTS.filter((r) => held.has(r)).join(', ')
  return deny(`service ${service} lacks ${right} on key ${keyName} (holds ${has})`)
}

// ---- Intentions -------------------------------------------------------------------

/** `*` on either side of an intention stands for any service. */
export const ANY_SERVICE = '*'

/**
 * `allow src dst`: src may open connections to dst, one direction only. `deny src dst`
 * is a rule too, and wins over every allow it matches, wildcards included. Without an
 * effect a rule is an allow.
 */
export type Intention = Pick<IntentionRecord, 'src' | 'dst'> & Partial<Pick<IntentionRecord, 'effect' | 'expiresAt'>>

const side = (rule: string, name: string): boolean => rule === ANY_SERVICE || rule === name
const matches = (i: Intention, src: string, dst: string): boolean => side(i.src, src) && side(i.dst, dst)
const ruleName = (i: Intention): string => `${i.effect ?? 'allow'} ${i.src} → ${i.dst}`

/** The rules in force at `now`: a removed rule works until its grace ends. */
export function activeIntentions<I extends Intention>(intentions: readonly I[], now: number): I[] {
  return intentions.filter((i) => i.expiresAt === undefined || i.expiresAt === null || i.expiresAt > now)
}

/** Deny wins, then any matching allow; nothing matching is a deny. Pass only active rules. */
export function mayConnect(intentions: readonly Intention[], src: string, dst: string): Decision {
  const denied = intentions.find((i) => i.effect === 'deny' && matches(i, src, dst))
  if (denied) return deny(`intention ${ruleName(denied)} denies ${src} → ${dst}`)
  const allowed = intentions.find((i) => i.effect !== 'deny' && matches(i, src, dst))
  if (!allowed) return deny(`no intention allows ${src} → ${dst}`)
  return allowed.src === src && allowed.dst === dst
    ? allow(`intention allows ${src} → ${dst}`)
    : allow(`intention ${ruleName(allowed)} allows ${src} → ${dst}`)
}

// ---- Tokens -----------------------------------------------------------------------

/** Admin and operator tokens share a form: the role lives in the store, not in the token. */
export type TokenKind = 'admin' | 'operator' | 'join'
export type TokenClass = 'operator' | 'join'

const PREFIX: Readonly<Record<TokenClass, string>> = { operator: 'kmo_', join: 'kmj_' }
const classOf = (kind: TokenKind): TokenClass => (kind === 'join' ? 'join' : 'operator')
export const TOKEN_SECRET_BYTES = 32
const TOKEN_BODY = /^[A-Za-z0-9_-]{43}$/ // 32 bytes in unpadded base64url

/**
 * `kmo_…` (operator or admin) or `kmj_…` (join) + base64url of 32 random bytes. The prefix
 * lets secret scanners and people recognise a keymesh token, and keeps a join token from
 * being mistaken for a bearer token.
 */
export function newToken(suite: CryptoSuite, kind: TokenKind): string {
  // The bytes are not wiped afterwards: the token lives on as a JS string, which cannot
  // be, and a test's fixed random source may hand out the same array more than once.
  return PREFIX[classOf(kind)] + Buffer.from(suite.randomBytes(TOKEN_SECRET_BYTES)).toString('base64url')
}

/**
 * Checks a presented token's form and returns its class; `expect` refuses the other class.
 * Throws CP_ERR_TOKEN_FORM whose detail never repeats the token. Non-canonical base64url
 * (stray low bits in the last character) is refused so that each secret has one spelling.
 */
export function parseToken(text: unknown, expect?: TokenClass): { kind: TokenClass } {
  if (typeof text !== 'string') throw cpError('CP_ERR_TOKEN_FORM', 'not a string')
  const kind = (Object.keys(PREFIX) as TokenClass[]).find((k) => text.startsWith(PREFIX[k]))
  if (kind === undefined) throw cpError('CP_ERR_TOKEN_FORM', 'unknown prefix')
  const body = text.slice(PREFIX[kind].length)
  if (!TOKEN_BODY.test(body) || Buffer.from(body, 'base64url').toString('base64url') !== body) {
    throw cpError('CP_ERR_TOKEN_FORM', `a ${kind} token is ${PREFIX[kind]} and 43 base64url characters`)
  }
  if (expect !== undefined && kind !== expect) throw cpError('CP_ERR_TOKEN_FORM', `${kind} token given where ${expect} token is required`)
  return { kind }
}

/**
 * Lower-case hex SHA-256 of the whole token text; `hashTokenBytes` gives the same 32 bytes
 * raw, as the store keeps them. A fast hash is right here, unlike for passwords: the tokens carry 256 random bits, so
 * a stolen hash cannot be reversed by guessing, and a slow KDF would only make every
 * authenticated request slow. Hashing the prefix too keeps the two classes apart.
 */
export function hashToken(suite: CryptoSuite, token: string): string {
  return Buffer.from(hashTokenBytes(suite, token)).toString('hex')
}

export function hashTokenBytes(suite: CryptoSuite, token: string): Uint8Array {
  return suite.sha256(Buffer.from(token, 'utf8'))
}

const HASH_HEX = /^[0-9a-f]{64}$/
const hashBytes = (h: string | Uint8Array): Buffer | null =>
  typeof h === 'string'
    ? (HASH_HEX.test(h) ? Buffer.from(h, 'hex') : null)
    : (h.length === 32 ? Buffer.from(h.buffer, h.byteOffset, h.length) : null)

/**
 * Constant-time comparison of two token hashes, each lower-case hex or 32 raw bytes.
 * Anything that is not a well-formed SHA-256 hash compares unequal; that check looks only
 * at form and length, which are public, and the bytes are compared without early exit.
 */
export function tokenHashEquals(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const x = hashBytes(a)
  const y = hashBytes(b)
  return x !== null && y !== null && timingSafeEqual(x, y)
}
