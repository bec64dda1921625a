// Names and identifiers that cross a wire or a disk, with strict parsers.
//
// Every parser accepts exactly one spelling per value (canonical form), so a name
// can be compared as a string, used as a map key or bound into a prologue or an
// associated-data header. Errors say which rule broke but never repeat the input:
// a token or key pasted into the wrong field must not end up in a log.
import { X25519_KEY_BYTES, type CryptoSuite, type RandomSource } from './crypto/suite.js'
import { protoError } from './errors.js'

// ---- service names --------------------------------------------------------

export const MAX_SERVICE_NAME = 63
const SERVICE_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** True for a DNS label: 1-63 of [a-z0-9-], no leading or trailing hyphen. */
export function isServiceName(s: unknown): s is string {
  return typeof s === 'string' && SERVICE_RE.test(s)
}

export function validateServiceName(s: unknown): string {
  if (!isServiceName(s)) {
    throw protoError('PROTO_ERR_INVALID_NAME', 'service name must be 1-63 of a-z, 0-9 and "-", not starting or ending with "-"')
  }
  return s
}

// ---- key names and key references -----------------------------------------

export const MAX_KEY_NAME = 63
// No ':' so that a key name fits in the `km1:<key>:<version>:` ciphertext header.
const KEY_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/

export function isKeyName(s: unknown): s is string {
  return typeof s === 'string' && KEY_RE.test(s)
}

export function validateKeyName(s: unknown): string {
  if (!isKeyName(s)) {
    throw protoError('PROTO_ERR_INVALID_NAME', 'key name must be 1-63 of a-z, 0-9, ".", "_" and "-", starting with a letter or digit')
  }
  return s
}

/** Key versions are u32 so they fit fixed-width binary headers (drops). */
export const MAX_KEY_VERSION = 0xffff_ffff

export function isKeyVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_KEY_VERSION
}

export interface KeyRef {
  readonly name: string
  readonly version: number
}

export function validateKeyRef(ref: { name: unknown; version: unknown }): KeyRef {
  const name = validateKeyName(ref.name)
  if (!isKeyVersion(ref.version)) throw protoError('PROTO_ERR_INVALID_NAME', `key version must be an integer in 1..${MAX_KEY_VERSION}`)
  return { name, version: ref.version }
}

/** `name:version`, the spelling used in ciphertext headers and audit targets. */
export function formatKeyRef(ref: KeyRef): string {
  const { name, version } = validateKeyRef(ref)
  return `${name}:${version}`
}

const VERSION_RE = /^[1-9][0-9]{0,9}$/

export function parseKeyRef(text: unknown): KeyRef {
  if (typeof text !== 'string' || text.length > MAX_KEY_NAME + 11) throw protoError('PROTO_ERR_INVALID_NAME', 'key reference must be name:version')
  const i = text.lastIndexOf(':')
  const v = text.slice(i + 1)
  if (i < 0 || !VERSION_RE.test(v)) throw protoError('PROTO_ERR_INVALID_NAME', 'key reference must be name:version with a decimal version')
  return validateKeyRef({ name: text.slice(0, i), version: Number(v) })
}

// ---- pair ids -------------------------------------------------------------

export const MAX_PAIR_ID = 2 * MAX_SERVICE_NAME + 1

export interface PairServices {
  /** The lesser service name (JavaScript string order, which for [a-z0-9-] is byte order). */
  readonly lo: string
  readonly hi: string
}

/** The pair id of two distinct services: `lo:hi`, the same whichever order they are given. */
export function pairId(a: string, b: string): string {
  validateServiceName(a)
  validateServiceName(b)
  if (a === b) throw protoError('PROTO_ERR_INVALID_NAME', 'a pair needs two distinct services')
  return a < b ? `${a}:${b}` : `${b}:${a}`
}

export function parsePairId(text: unknown): PairServices {
  if (typeof text !== 'string' || text.length > MAX_PAIR_ID) throw protoError('PROTO_ERR_INVALID_NAME', 'pair id must be lo:hi')
  const i = text.indexOf(':')
  const lo = text.slice(0, i)
  const hi = text.slice(i + 1)
  if (i < 0 || !isServiceName(lo) || !isServiceName(hi)) {
    throw protoError('PROTO_ERR_INVALID_NAME', 'pair id must be two service names joined by ":"')
  }
  if (!(lo < hi)) throw protoError('PROTO_ERR_INVALID_NAME', 'pair id must name two distinct services in sorted order')
  return { lo, hi }
}

export function isPairId(text: unknown): text is string {
  try {
    parsePairId(text)
    return true
  } catch {
    return false
  }
}

/** The other service of a pair, or PROTO_ERR_INVALID_NAME when `service` is not in it. */
export function peerOf(id: string, service: string): string {
  const { lo, hi } = parsePairId(id)
  if (service === lo) return hi
  if (service === hi) return lo
  throw protoError('PROTO_ERR_INVALID_NAME', 'service is not part of this pair')
}

// ---- random ids -----------------------------------------------------------

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
export const ID_RANDOM_BYTES = 16
/** 128 bits in base32: 25 full characters and one carrying the last 3 bits. */
export const ID_RANDOM_CHARS = 26
export const AGENT_ID_PREFIX = 'agt'
export const TOKEN_ID_PREFIX = 'tok'
const PREFIX_RE = /^[a-z]{2,8}$/
const ID_BODY_RE = /^[a-z2-7]{25}[aeimquy4]$/

function base32(bytes: Uint8Array): string {
  let out = ''
  let acc = 0
  let bits = 0
  for (const b of bytes) {
    acc = (acc << 8) | b
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += B32[(acc >>> bits) & 31]
    }
    acc &= (1 << bits) - 1
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31]
  return out
}

/** `prefix_` + 26 lowercase base32 characters of 128 bits from `random`. */
export function newId(prefix: string, random: RandomSource): string {
  if (!PREFIX_RE.test(prefix)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'id prefix must be 2-8 of a-z')
  const bytes = random(ID_RANDOM_BYTES)
  if (!(bytes instanceof Uint8Array) || bytes.length !== ID_RANDOM_BYTES) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `random source must return ${ID_RANDOM_BYTES} bytes`)
  }
  return `${prefix}_${base32(bytes)}`
}

/** True when `text` is `prefix_` + a canonical 26-character base32 body (last character's unused bits zero). */
export function isId(text: unknown, prefix: string): text is string {
  return (
    typeof text === 'string' &&
    text.length === prefix.length + 1 + ID_RANDOM_CHARS &&
    text.startsWith(prefix) &&
    text[prefix.length] === '_' &&
    ID_BODY_RE.test(text.slice(prefix.length + 1))
  )
}

export function validateId(text: unknown, prefix: string): string {
  if (!isId(text, prefix)) throw protoError('PROTO_ERR_INVALID_ID', `expected ${prefix}_ and 26 base32 characters`)
  return text
}

export const newAgentId = (random: RandomSource): string => newId(AGENT_ID_PREFIX, random)
export const validateAgentId = (text: unknown): string => validateId(text, AGENT_ID_PREFIX)
export const newTokenId = (random: RandomSource): string => newId(TOKEN_ID_PREFIX, random)
export const validateTokenId = (text: unknown): string => validateId(text, TOKEN_ID_PREFIX)

// ---- public-key text ------------------------------------------------------

export const PUBLIC_KEY_PREFIX = 'x25519:'
export const PUBLIC_KEY_TEXT_LENGTH = PUBLIC_KEY_PREFIX.length + 43
// 32 bytes = 256 bits in 43 characters: the last one carries 4 bits, so its two
// low bits must be zero for the text to be canonical.
const PUBLIC_KEY_BODY_RE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

/** `x25519:` + unpadded base64url of the 32-byte public key. */
export function formatPublicKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== X25519_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_KEY', `public key must be ${X25519_KEY_BYTES} bytes`)
  }
  return PUBLIC_KEY_PREFIX + Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('base64url')
}

/**
 * `sha256:` + the hex SHA-256 of the 32 key bytes: what people compare when a pinned
 * control-plane key and the control plane's own disagree.
 */
export function publicKeyFingerprint(suite: CryptoSuite, publicKey: Uint8Array): string {
  formatPublicKey(publicKey) // the same checks
  return `sha256:${Buffer.from(suite.sha256(publicKey)).toString('hex')}`
}

export function isPublicKeyText(text: unknown): text is string {
  return (
    typeof text === 'string' &&
    text.length === PUBLIC_KEY_TEXT_LENGTH &&
    text.startsWith(PUBLIC_KEY_PREFIX) &&
    PUBLIC_KEY_BODY_RE.test(text.slice(PUBLIC_KEY_PREFIX.length))
  )
}

/** The 32 bytes of a canonical public-key text; anything else is PROTO_ERR_INVALID_PUBLIC_KEY_TEXT. */
export function parsePublicKey(text: unknown): Uint8Array {
  // The pattern already forces canonical text; re-encoding is the belt to its braces.
  const bytes = isPublicKeyText(text) ? Buffer.from(text.slice(PUBLIC_KEY_PREFIX.length), 'base64url') : undefined
  if (bytes === undefined || PUBLIC_KEY_PREFIX + bytes.toString('base64url') !== text || bytes.length !== X25519_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_PUBLIC_KEY_TEXT')
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
}

// ---- tunnel endpoints -----------------------------------------------------

/** Bounded so that a pair entry with its maximum number of peers fits in one record. */
export const MAX_ENDPOINT_URL = 160
// Printable URL characters only: no quote or backslash, so the JSON size is the length.
const ENDPOINT_RE = /^wss?:\/\/[A-Za-z0-9._~:/?#[\]@!$&'()*+,;=%-]+$/

// Hosts an advertised endpoint may not name, because peers dial what an agent advertises:
// the unspecified address, link-local addresses, and the cloud metadata and platform
// services (169.254.169.254, fd00:ec2::254, Alibaba's 100.100.100.200, Azure's
// WireServer 168.63.129.16, metadata.google.internal) — an agent that could advertise
// them would turn its peers into a probe of their own host's secrets. IPv6 forms that
// carry an IPv4 address (mapped, compatible, NAT64, SIIT) are judged by that address.
// A DNS name that resolves to such an address is not seen here; the dialer's address
// check is the place for that. Loopback and private ranges stay allowed: agents on one
// host or one private network advertise them.
const METADATA_NAMES: ReadonlySet<string> = new Set([
  'metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal',
])
const FORBIDDEN_V4: ReadonlySet<string> = new Set(['0.0.0.0', '100.100.100.200', '168.63.129.16'])

function isForbiddenV4(a: number, b: number, c: number, d: number): boolean {
  return (a === 169 && b === 254) || FORBIDDEN_V4.has(`${a}.${b}.${c}.${d}`)
}

/** The IPv4 address an IPv6 literal carries in its last 32 bits, for the forms that carry one. */
function embeddedV4(v6: string): [number, number, number, number] | undefined {
  // URL writes every IPv6 literal in its canonical compressed form, the IPv4 part in hex.
  const m = /^(::ffff:|::ffff:0:|::|64:ff9b::|64:ff9b:1::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6)
  if (m === null) return undefined
  const hi = parseInt(m[2] as string, 16)
  const lo = parseInt(m[3] as string, 16)
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]
}

/** True for a URL hostname (IPv6 in brackets) that no advertised endpoint may name. */
export function isForbiddenEndpointHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '')
  if (METADATA_NAMES.has(host)) return true
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host)
  if (v4 !== null) return isForbiddenV4(Number(v4[1]), Number(v4[2]), Number(v4[3]), Number(v4[4]))
  if (!host.startsWith('[')) return false
  const v6 = host.slice(1, -1)
  if (v6 === '::' || /^fe[89ab][0-9a-f]?:/.test(v6) || v6 === 'fd00:ec2::254') return true
  const carried = embeddedV4(v6)
  return carried !== undefined && isForbiddenV4(...carried)
}

/**
 * A ws:// or wss:// URL with a host, no credentials and no fragment, at most 160
 * characters, whose host is not link-local, a metadata service or unspecified.
 */
export function isEndpointUrl(text: unknown): text is string {
  if (typeof text !== 'string' || text.length > MAX_ENDPOINT_URL || !ENDPOINT_RE.test(text)) return false
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return false
  }
  return url.hostname !== '' && url.username === '' && url.password === '' && url.hash === '' && !text.includes('#') &&
    !isForbiddenEndpointHost(url.hostname)
}

export function validateEndpointUrl(text: unknown): string {
  if (!isEndpointUrl(text)) {
    throw protoError('PROTO_ERR_INVALID_NAME', `endpoint must be a ws:// or wss:// URL with a host that is not link-local, a metadata service or unspecified, without credentials, at most ${MAX_ENDPOINT_URL} characters`)
  }
  return text
}
