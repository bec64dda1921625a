// Noise HandshakeState (spec rev. 34, §5.3) for any pattern in patterns.ts.
//
// Contract:
//   - writeMessage/readMessage must alternate as the pattern says; a call out of turn,
//     after completion or after a failure throws PROTO_ERR_HANDSHAKE_STATE.
//   - Any error thrown by writeMessage or readMessage fails the state for good: every
//     later call throws PROTO_ERR_HANDSHAKE_STATE. A broken handshake is never retried;
//     the caller starts a new one.
//   - A message's length is checked against the pattern before any of it is used.
//   - Pure: no I/O, no timers. Randomness only through suite.x25519Generate().
//
// Departures from the spec, all stricter:
//   - The number of PSKs must equal the number of psk tokens, each exactly 32 bytes.
//   - Keys the pattern will need locally (s, pre-message keys) are checked up front.
//   - One-way patterns: split() refuses; splitOneWay() returns only the first
//     CipherState, because the spec says the second one must not be used (§7.4).
//   - No `re` option: only the fallback patterns (§10.2) pre-know an ephemeral, and
//     they are not in patterns.ts, so Initialize() never needs one.
import { protoError } from '../errors.js'
import { X25519_KEY_BYTES, type CryptoSuite, type KeyPair } from '../crypto/suite.js'
import type { CipherState } from './cipher-state.js'
import { parseProtocolName, type HandshakePattern, type PreToken, type Token } from './patterns.js'
import { SymmetricState } from './symmetric-state.js'

export const MAX_NOISE_MESSAGE = 65535
export const PSK_BYTES = 32
const TAG = 16
const EMPTY = new Uint8Array(0)

export interface HandshakeOptions {
  suite: CryptoSuite
  /** Full name, e.g. "Noise_XK_25519_ChaChaPoly_SHA256". */
  protocolName: string
  initiator: boolean
  prologue?: Uint8Array
  /** Local static key pair. */
  s?: KeyPair
  /** Preset local ephemeral key pair: for known-answer tests only. */
  e?: KeyPair
  /** Remote static public key known in advance (pre-message or pinned). */
  rs?: Uint8Array
  /** PSKs in the order their psk tokens appear. */
  psks?: readonly Uint8Array[]
  /** Upper bound on any handshake message; at most (and by default) 65535. */
  maxMessageLength?: number
}

export interface TransportPair {
  send: CipherState
  recv: CipherState
  handshakeHash: Uint8Array
}

function copyKey(key: Uint8Array, what: string): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== X25519_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_KEY', `${what} must be ${X25519_KEY_BYTES} bytes`)
  }
  return new Uint8Array(key)
}

function copyPair(pair: KeyPair, what: string): KeyPair {
  return { publicKey: copyKey(pair.publicKey, `${what} public key`), secretKey: copyKey(pair.secretKey, `${what} secret key`) }
}

export class HandshakeState {
  readonly pattern: HandshakePattern
  readonly initiator: boolean
  readonly #suite: CryptoSuite
  readonly #ss: SymmetricState
  readonly #psks: Uint8Array[]
  readonly #pskMode: boolean
  readonly #max: number
  #s: KeyPair | undefined
  #e: KeyPair | undefined
  #rs: Uint8Array | undefined
  #re: Uint8Array | undefined
  #index = 0
  #failed = false
  #split = false

  constructor(options: HandshakeOptions) {
    const pattern = parseProtocolName(options.protocolName)
    const max = options.maxMessageLength ?? MAX_NOISE_MESSAGE
    if (!Number.isInteger(max) || max < 1 || max > MAX_NOISE_MESSAGE) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', `maxMessageLength must be 1..${MAX_NOISE_MESSAGE}`)
    }
    const psks = options.psks ?? []
    if (psks.length < pattern.pskCount) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', `${pattern.name} needs ${pattern.pskCount} PSK(s)`)
    if (psks.length > pattern.pskCount) throw protoError('PROTO_ERR_INVALID_ARGUMENT', `${pattern.name} takes ${pattern.pskCount} PSK(s)`)
    for (const psk of psks) {
      if (!(psk instanceof Uint8Array) || psk.length !== PSK_BYTES) throw protoError('PROTO_ERR_INVALID_KEY', `PSK must be ${PSK_BYTES} bytes`)
    }
    const prologue = options.prologue ?? EMPTY
    if (!(prologue instanceof Uint8Array)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'prologue must be bytes')

    this.pattern = pattern
    this.initiator = options.initiator === true
    this.#suite = options.suite
    this.#max = max
    this.#psks = psks.map((p) => new Uint8Array(p))
    this.#pskMode = pattern.pskCount > 0
    this.#s = options.s && copyPair(options.s, 'local static')
    this.#e = options.e && copyPair(options.e, 'local ephemeral')
    this.#rs = options.rs && copyKey(options.rs, 'remote static')

    // A local static is needed when it is pre-known to the peer or sent/used by us.
    const [mine, theirs] = this.initiator ? [pattern.initiatorPre, pattern.responderPre] : [pattern.responderPre, pattern.initiatorPre]
    const needsS = mine.includes('s') || pattern.messages.some((m, i) => this.#isMine(i) && m.includes('s')) ||
      pattern.messages.some((m) => m.includes(this.initiator ? 'se' : 'es') || m.includes('ss'))
    if (needsS && !this.#s) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'local static key')
    if (theirs.includes('s') && !this.#rs) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'remote static key')

    this.#ss = new SymmetricState(this.#suite, options.protocolName)
    this.#ss.mixHash(prologue)
    // Pre-messages: the initiator's keys first, then the responder's (§7.1).
    // Pre-message tokens are only ever "s" (patterns.ts), each at most once.
    const preKey = (tokens: readonly PreToken[], local: boolean): void => {
      if (tokens.length > 0) this.#ss.mixHash((local ? this.#s?.publicKey : this.#rs) as Uint8Array)
    }
    preKey(pattern.initiatorPre, this.initiator)
    preKey(pattern.responderPre, !this.initiator)
  }

  /** True once the last handshake message was written or read. */
  get isComplete(): boolean {
    return this.#index >= this.pattern.messages.length
  }

  get isFailed(): boolean {
    return this.#failed
  }

  /** True when the next call must be writeMessage. */
  get isMyTurn(): boolean {
    return !this.#failed && !this.isComplete && this.#isMine(this.#index)
  }

  /** The peer's static public key once known (pre-set, or learned from a message). */
  get remoteStatic(): Uint8Array | undefined {
    return this.#rs && new Uint8Array(this.#rs)
  }

  /** GetHandshakeHash(): only meaningful, so only available, once complete. */
  get handshakeHash(): Uint8Array {
    if (!this.isComplete || this.#failed) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'handshake hash before completion')
    return this.#ss.getHandshakeHash()
  }

  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#checkTurn(true)
    try {
      if (!(payload instanceof Uint8Array)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'payload must be bytes')
      const tokens = this.#tokens()
      if (this.#expectedLength(tokens) + payload.length > this.#max) {
        throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `message would exceed ${this.#max} bytes`)
      }
      const parts: Uint8Array[] = []
      for (const t of tokens) {
        if (t === 'e') {
          this.#e ??= this.#suite.x25519Generate()
          parts.push(new Uint8Array(this.#e.publicKey))
          this.#mixEphemeral(this.#e.publicKey)
        } else if (t === 's') {
          parts.push(this.#ss.encryptAndHash((this.#s as KeyPair).publicKey))
        } else this.#mixToken(t)
      }
      parts.push(this.#ss.encryptAndHash(payload))
      this.#index++
      return concat(parts)
    } catch (err) {
      this.#fail()
      throw err
    }
  }

  readMessage(message: Uint8Array): Uint8Array {
    this.#checkTurn(false)
    try {
      if (!(message instanceof Uint8Array)) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'message must be bytes')
      const tokens = this.#tokens()
      const min = this.#expectedLength(tokens)
      if (message.length < min || message.length > this.#max) {
        throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `length ${message.length} outside ${min}..${this.#max}`)
      }
      let off = 0
      const take = (n: number): Uint8Array => new Uint8Array(message.subarray(off, (off += n)))
      for (const t of tokens) {
        if (t === 'e') {
          this.#re = take(X25519_KEY_BYTES)
          this.#mixEphemeral(this.#re)
        } else if (t === 's') {
          const sealed = take(X25519_KEY_BYTES + (this.#ss.hasKey() ? TAG : 0))
          this.#rs = new Uint8Array(this.#ss.decryptAndHash(sealed))
        } else this.#mixToken(t)
      }
      const payload = this.#ss.decryptAndHash(take(message.length - off))
      this.#index++
      return payload
    } catch (err) {
      this.#fail()
      throw err
    }
  }

  /** Split() for interactive patterns: the initiator sends with c1, the responder with c2. */
  split(): TransportPair {
    if (this.pattern.oneWay) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'one-way pattern: use splitOneWay()')
    const [c1, c2, handshakeHash] = this.#doSplit()
    return this.initiator ? { send: c1, recv: c2, handshakeHash } : { send: c2, recv: c1, handshakeHash }
  }

  /** Split() for one-way patterns: the single initiator→responder CipherState; c2 is destroyed. */
  splitOneWay(): { cipher: CipherState; handshakeHash: Uint8Array } {
    if (!this.pattern.oneWay) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'interactive pattern: use split()')
    const [c1, c2, handshakeHash] = this.#doSplit()
    c2.destroy()
    return { cipher: c1, handshakeHash }
  }

  /** Wipes every secret; the state is failed afterwards. */
  destroy(): void {
    this.#fail()
  }

  #doSplit(): [CipherState, CipherState, Uint8Array] {
    if (!this.isComplete || this.#failed || this.#split) {
      throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'split before completion, after failure, or twice')
    }
    this.#split = true
    const handshakeHash = this.#ss.getHandshakeHash()
    const [c1, c2] = this.#ss.split()
    this.#wipeKeys()
    return [c1, c2, handshakeHash]
  }

  #isMine(index: number): boolean {
    return (index % 2 === 0) === this.initiator
  }

  #checkTurn(write: boolean): void {
    if (this.#failed) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'handshake failed earlier')
    if (this.isComplete) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'handshake already complete')
    if (this.#isMine(this.#index) !== write) {
      this.#fail()
      throw protoError('PROTO_ERR_HANDSHAKE_STATE', write ? 'not our turn to write' : 'not our turn to read')
    }
  }

  #tokens(): readonly Token[] {
    return this.pattern.messages[this.#index] as readonly Token[]
  }

  // The message length without payload bytes, simulating when the cipher gets a key.
  #expectedLength(tokens: readonly Token[]): number {
    let keyed = this.#ss.hasKey()
    let n = 0
    for (const t of tokens) {
      if (t === 'e') {
        n += X25519_KEY_BYTES
        keyed ||= this.#pskMode
      } else if (t === 's') n += X25519_KEY_BYTES + (keyed ? TAG : 0)
      else keyed = true
    }
    return n + (keyed ? TAG : 0)
  }

  #mixEphemeral(pub: Uint8Array): void {
    this.#ss.mixHash(pub)
    if (this.#pskMode) this.#ss.mixKey(pub) // §9.2: e also feeds the key when PSKs are used
  }

  #mixToken(t: Exclude<Token, 'e' | 's'>): void {
    if (t === 'psk') {
      const psk = this.#psks.shift() as Uint8Array
      this.#ss.mixKeyAndHash(psk)
      psk.fill(0)
      return
    }
    // es: initiator's e with responder's s; se: initiator's s with responder's e.
    const localStatic = t === 'ss' || (t === 'es' ? !this.initiator : t === 'se' && this.initiator)
    const remoteStatic = t === 'ss' || (t === 'es' ? this.initiator : t === 'se' && !this.initiator)
    const local = localStatic ? this.#s : this.#e
    const remote = remoteStatic ? this.#rs : this.#re
    if (!local || !remote) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', `no key for ${t}`)
    const shared = this.#suite.x25519(local.secretKey, remote)
    this.#ss.mixKey(shared)
    shared.fill(0)
  }

  #wipeKeys(): void {
    this.#s?.secretKey.fill(0)
    // The ephemeral must be gone for good: no provider cache may keep it either.
    if (this.#e) this.#suite.x25519Forget(this.#e.secretKey)
    this.#e?.secretKey.fill(0)
    for (const psk of this.#psks) psk.fill(0)
    this.#s = undefined
    this.#e = undefined
  }

  #fail(): void {
    this.#failed = true
    this.#wipeKeys()
    this.#ss.destroy()
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}
