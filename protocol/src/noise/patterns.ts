// Noise handshake patterns (spec rev. 34, §7) and the psk modifier (§9.2), for the
// one suite keymesh speaks: 25519 / ChaChaPoly / SHA256.
//
// The patterns are written in the spec's own notation and parsed once, so the table
// below can be checked against §7.4 (one-way), §7.5 (interactive fundamental) and
// §7.6 (interactive deferred) by eye.
import { protoError } from '../errors.js'

export type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss' | 'psk'
// Only "s" occurs in pre-messages of the patterns below; "e" pre-messages belong to
// the fallback patterns (§10.2), which keymesh does not use.
export type PreToken = 's'

export interface HandshakePattern {
  /** Base name plus modifiers, e.g. "KKpsk0". */
  readonly name: string
  /** Pre-message tokens known to the responder about the initiator (-> ...), then vice versa. */
  readonly initiatorPre: readonly PreToken[]
  readonly responderPre: readonly PreToken[]
  /** Message i is sent by the initiator when i is even. */
  readonly messages: readonly (readonly Token[])[]
  readonly oneWay: boolean
  /** Number of psk tokens: the PSKs the handshake needs, in token order. */
  readonly pskCount: number
}

export const SUITE_SUFFIX = '_25519_ChaChaPoly_SHA256'

// "->" lines are the initiator's, "<-" the responder's; "..." ends pre-messages.
const BASE: Readonly<Record<string, string>> = {
  // §7.4 one-way
  N: '<- s ... -> e, es',
  K: '-> s <- s ... -> e, es, ss',
  X: '<- s ... -> e, es, s, ss',
  // §7.5 interactive fundamental
  NN: '-> e <- e, ee',
  NK: '<- s ... -> e, es <- e, ee',
  NX: '-> e <- e, ee, s, es',
  KN: '-> s ... -> e <- e, ee, se',
  KK: '-> s <- s ... -> e, es, ss <- e, ee, se',
  KX: '-> s ... -> e <- e, ee, se, s, es',
  XN: '-> e <- e, ee -> s, se',
  XK: '<- s ... -> e, es <- e, ee -> s, se',
  XX: '-> e <- e, ee, s, es -> s, se',
  IN: '-> e, s <- e, ee, se',
  IK: '<- s ... -> e, es, s, ss <- e, ee, se',
  IX: '-> e, s <- e, ee, se, s, es',
  // §7.6 interactive deferred
  NK1: '<- s ... -> e <- e, ee, es',
  NX1: '-> e <- e, ee, s -> es',
  X1N: '-> e <- e, ee -> s <- se',
  X1K: '<- s ... -> e, es <- e, ee -> s <- se',
  XK1: '<- s ... -> e <- e, ee, es -> s, se',
  X1K1: '<- s ... -> e <- e, ee, es -> s <- se',
  X1X: '-> e <- e, ee, s, es -> s <- se',
  XX1: '-> e <- e, ee, s -> es, s, se',
  X1X1: '-> e <- e, ee, s -> es, s <- se',
  K1N: '-> s ... -> e <- e, ee -> se',
  K1K: '-> s <- s ... -> e, es <- e, ee -> se',
  KK1: '-> s <- s ... -> e <- e, ee, se, es',
  K1K1: '-> s <- s ... -> e <- e, ee, es -> se',
  K1X: '-> s ... -> e <- e, ee, s, es -> se',
  KX1: '-> s ... -> e <- e, ee, se, s -> es',
  K1X1: '-> s ... -> e <- e, ee, s -> se, es',
  I1N: '-> e, s <- e, ee -> se',
  I1K: '<- s ... -> e, es, s <- e, ee -> se',
  IK1: '<- s ... -> e, s <- e, ee, se, es',
  I1K1: '<- s ... -> e, s <- e, ee, es -> se',
  I1X: '-> e, s <- e, ee, s, es -> se',
  IX1: '-> e, s <- e, ee, se, s -> es',
  I1X1: '-> e, s <- e, ee, s -> se, es',
}

const ONE_WAY = new Set(['N', 'K', 'X'])

interface Parsed {
  initiatorPre: PreToken[]
  responderPre: PreToken[]
  messages: Token[][]
}

// Splits "-> a, b <- c" into directed lines. Not exposed: the table is the only input.
function lines(text: string): { dir: '->' | '<-'; tokens: string[] }[] {
  const out: { dir: '->' | '<-'; tokens: string[] }[] = []
  for (const part of text.split(/(?=->|<-)/)) {
    const trimmed = part.trim()
    if (trimmed === '') continue
    const dir = trimmed.slice(0, 2) as '->' | '<-'
    out.push({ dir, tokens: trimmed.slice(2).split(',').map((s) => s.trim()) })
  }
  return out
}

function parseBase(text: string): Parsed {
  const [pre, main] = text.includes('...') ? (text.split('...') as [string, string]) : ['', text]
  const parsed: Parsed = { initiatorPre: [], responderPre: [], messages: [] }
  for (const l of lines(pre)) {
    ;(l.dir === '->' ? parsed.initiatorPre : parsed.responderPre).push(...(l.tokens as PreToken[]))
  }
  for (const l of lines(main)) parsed.messages.push(l.tokens as Token[])
  return parsed
}

/**
 * Applies psk modifiers per §9.2: psk0 puts "psk" at the start of the first
 * message, pskN (N ≥ 1) at the end of message N. Modifiers apply left to right.
 */
function applyModifiers(parsed: Parsed, modifiers: string[], full: string): void {
  for (const m of modifiers) {
    const match = /^psk(0|[1-9][0-9]?)$/.exec(m)
    if (!match) throw protoError('PROTO_ERR_UNKNOWN_PATTERN', `unsupported modifier in ${full}`)
    const n = Number(match[1])
    if (n > parsed.messages.length) throw protoError('PROTO_ERR_UNKNOWN_PATTERN', `${m} beyond the last message of ${full}`)
    const target = parsed.messages[n === 0 ? 0 : n - 1] as Token[]
    if (n === 0) target.unshift('psk')
    else target.push('psk')
  }
}

const cache = new Map<string, HandshakePattern>()

/** The pattern for "KKpsk0", "XK", "NX1", "XXpsk0+psk3", ...; PROTO_ERR_UNKNOWN_PATTERN otherwise. */
export function getPattern(name: string): HandshakePattern {
  const hit = cache.get(name)
  if (hit) return hit
  const m = /^([A-Z][A-Z0-9]*?)((?:psk[0-9]+)(?:\+psk[0-9]+)*)?$/.exec(name)
  const base = m?.[1]
  const text = base === undefined ? undefined : BASE[base]
  if (m === null || base === undefined || text === undefined) {
    throw protoError('PROTO_ERR_UNKNOWN_PATTERN', 'no such handshake pattern')
  }
  const parsed = parseBase(text)
  const modifiers = m[2] === undefined ? [] : m[2].split('+')
  if (new Set(modifiers).size !== modifiers.length) throw protoError('PROTO_ERR_UNKNOWN_PATTERN', 'repeated modifier')
  applyModifiers(parsed, modifiers, name)
  const pattern: HandshakePattern = Object.freeze({
    name,
    initiatorPre: Object.freeze(parsed.initiatorPre),
    responderPre: Object.freeze(parsed.responderPre),
    messages: Object.freeze(parsed.messages.map((msg) => Object.freeze(msg))),
    oneWay: ONE_WAY.has(base),
    pskCount: parsed.messages.reduce((n, msg) => n + msg.filter((t) => t === 'psk').length, 0),
  })
  cache.set(name, pattern)
  return pattern
}

/** Parses "Noise_<PATTERN>_25519_ChaChaPoly_SHA256"; any other suite or form is PROTO_ERR_UNKNOWN_PATTERN. */
export function parseProtocolName(protocolName: string): HandshakePattern {
  if (typeof protocolName !== 'string' || !protocolName.startsWith('Noise_') || !protocolName.endsWith(SUITE_SUFFIX)) {
    throw protoError('PROTO_ERR_UNKNOWN_PATTERN', 'only Noise_*_25519_ChaChaPoly_SHA256 is supported')
  }
  const name = protocolName.slice('Noise_'.length, protocolName.length - SUITE_SUFFIX.length)
  if (name.length === 0) throw protoError('PROTO_ERR_UNKNOWN_PATTERN', 'empty pattern name')
  return getPattern(name)
}

/** The names of every base pattern in the table (for tests and tooling). */
export const PATTERN_NAMES: readonly string[] = Object.freeze(Object.keys(BASE))
