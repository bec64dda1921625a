// The cleartext tunnel preamble and the prologue encoding for keymesh handshakes.
//
// An agent opening a tunnel sends the preamble before Noise message 1: the responder
// cannot build its KKpsk0 state (PSK = pair key of a version, remote static = the
// initiating agent's key) without knowing which pair, version and agent it is. The
// preamble is unauthenticated, so every one of its fields also goes into the Noise
// prologue: a tampered preamble gives the two sides different prologues and the
// handshake fails at the first authenticated message.
//
// Preamble wire format (all integers big-endian):
//   u8  preamble version (1 = keymesh/1)
//   u32 key version (1 .. 2^32-1)
//   4 × (u8 length, ASCII bytes): pairId, fromService, toService, fromAgent
// Nothing may follow the last field. Field rules are names.ts's.
import { protoError } from '../errors.js'
import { encodeFieldList } from '../field-list.js'
import {
  AGENT_ID_PREFIX,
  ID_RANDOM_CHARS,
  MAX_KEY_VERSION,
  MAX_PAIR_ID,
  MAX_SERVICE_NAME,
  isKeyVersion,
  pairId,
  parsePairId,
  validateAgentId,
  validateServiceName,
} from '../names.js'
import { PROTOCOL_VERSION } from '../version.js'

const AGENT_ID_CHARS = AGENT_ID_PREFIX.length + 1 + ID_RANDOM_CHARS

export const PREAMBLE_VERSION = 1
export const MAX_PREAMBLE_BYTES = 1 + 4 + (1 + MAX_PAIR_ID) + 2 * (1 + MAX_SERVICE_NAME) + (1 + AGENT_ID_CHARS)

export interface TunnelContext {
  /** The pair whose key is the PSK: `lo:hi` of the two services (names.ts pairId). */
  readonly pairId: string
  /** The pair key version used as the PSK (u32, from 1). */
  readonly keyVersion: number
  /** The initiating service. */
  readonly fromService: string
  /** The responding service. */
  readonly toService: string
  /** The initiating agent (`agt_…`), whose static key the responder expects. */
  readonly fromAgent: string
}

/**
 * Validates every field and returns a frozen copy. Beyond each field's own rules,
 * the pair id must be the pair of the two services, so a preamble cannot name one
 * pair's key and another pair's services.
 */
export function checkTunnelContext(ctx: TunnelContext): TunnelContext {
  if (typeof ctx !== 'object' || ctx === null) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'tunnel context must be an object')
  const fromService = validateServiceName(ctx.fromService)
  const toService = validateServiceName(ctx.toService)
  parsePairId(ctx.pairId)
  if (!isKeyVersion(ctx.keyVersion)) throw protoError('PROTO_ERR_HANDSHAKE_PROLOGUE', `key version must be an integer 1..${MAX_KEY_VERSION}`)
  const fromAgent = validateAgentId(ctx.fromAgent)
  if (fromService === toService || ctx.pairId !== pairId(fromService, toService)) {
    throw protoError('PROTO_ERR_HANDSHAKE_PROLOGUE', 'pair id is not the pair of the two services')
  }
  return Object.freeze({ pairId: ctx.pairId, keyVersion: ctx.keyVersion, fromService, toService, fromAgent })
}

/**
 * Prologue: each field as u16 big-endian length then UTF-8 bytes, so no two field
 * lists encode alike ("ab","c" ≠ "a","bc"). Empty fields are allowed by the encoding.
 */
export function encodePrologue(fields: readonly string[]): Uint8Array {
  return encodeFieldList(fields, 'PROTO_ERR_HANDSHAKE_PROLOGUE')
}

export function controlPrologue(): Uint8Array {
  return encodePrologue([PROTOCOL_VERSION, 'control'])
}

export function tunnelPrologue(ctx: TunnelContext): Uint8Array {
  const c = checkTunnelContext(ctx)
  return encodePrologue([PROTOCOL_VERSION, 'tunnel', c.pairId, String(c.keyVersion), c.fromService, c.toService, c.fromAgent])
}

export function encodeTunnelPreamble(ctx: TunnelContext): Uint8Array {
  const c = checkTunnelContext(ctx)
  // Every field is ASCII after validation, so string length equals byte length.
  const fields = [c.pairId, c.fromService, c.toService, c.fromAgent]
  const out = new Uint8Array(5 + fields.reduce((n, f) => n + 1 + f.length, 0))
  out[0] = PREAMBLE_VERSION
  new DataView(out.buffer).setUint32(1, c.keyVersion)
  let off = 5
  for (const f of fields) {
    out[off++] = f.length
    for (let i = 0; i < f.length; i++) out[off++] = f.charCodeAt(i)
  }
  return out
}

/** Parses and validates a preamble; every failure is a typed PROTO_ERR_*. */
export function decodeTunnelPreamble(bytes: Uint8Array): TunnelContext {
  if (!(bytes instanceof Uint8Array)) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'preamble must be bytes')
  if (bytes.length > MAX_PREAMBLE_BYTES) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'preamble too long')
  if (bytes.length < 5) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'preamble truncated')
  if (bytes[0] !== PREAMBLE_VERSION) throw protoError('PROTO_ERR_VERSION', `preamble version ${bytes[0]}`)
  const keyVersion = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1)
  let off = 5
  const field = (): string => {
    if (off >= bytes.length) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'preamble truncated')
    const len = bytes[off++] as number
    if (off + len > bytes.length) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'preamble truncated')
    // One char per byte; the names.ts validators then reject anything non-ASCII.
    const s = String.fromCharCode(...bytes.subarray(off, off + len))
    off += len
    return s
  }
  const pairId = field()
  const fromService = field()
  const toService = field()
  const fromAgent = field()
  if (off !== bytes.length) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'trailing bytes after preamble')
  return checkTunnelContext({ pairId, keyVersion, fromService, toService, fromAgent })
}
