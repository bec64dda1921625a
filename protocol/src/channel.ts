// A Noise channel over any message transport: runs a HandshakeState, then carries
// control messages in records (record.ts), one transport message per record.
// Pure: it is fed bytes (`receive`) and hands bytes to a transport (`send`); the
// caller owns the socket and the timers. Both ends of the agent ↔ control-plane
// link use it, as initiator or responder, with any handshake pattern.
//
// Contract:
//   - The initiator calls start() to write the first handshake message. Each side's
//     handshake payloads come from `payload(index, read)` (index = handshake message
//     number from 0; `read` = the payloads this side has read so far, so a payload
//     may answer an earlier one); the payloads it reads are handed to onHandshake in
//     order. A KeymeshError thrown by `payload` fails the channel.
//   - Any error in received bytes (handshake, record, message) fails the channel:
//     the transport is closed with that error's close code and its code as the
//     reason, onError gets the typed error, and later receive/send calls throw
//     PROTO_ERR_SESSION_FAILED. Errors thrown by the handler propagate to the caller.
//   - send() before the handshake completes throws PROTO_ERR_HANDSHAKE_STATE; after
//     close() it throws PROTO_ERR_SESSION_CLOSED.
//   - close() seals an authenticated CLOSE record when it can, then closes the
//     transport. A CLOSE from the peer is answered the same way.
//   - Plaintext is wiped after sealing and after decoding (messages may carry keys).
//   - REKEY records are handled by the record layer; a HANDSHAKE record (the tunnel's
//     in-band re-handshake) has no meaning here and fails with PROTO_ERR_RECORD_TYPE.
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import { decodeMessage, encodeMessage, MAX_MESSAGE_BYTES, type Message } from './messages/index.js'
import type { HandshakeState } from './noise/handshake-state.js'
import { MAX_NOISE_MESSAGE } from './noise/handshake-state.js'
import { RecordSession, type RecordLimits } from './record.js'

export interface MessageTransport {
  send(bytes: Uint8Array): void
  close(code: number, reason: string): void
}

export interface ChannelLimits extends RecordLimits {
  /** Largest handshake message accepted; default and at most 65,535. */
  maxHandshakeBytes?: number
  /** Largest encoded control message accepted; default and at most 65,510. */
  maxMessageBytes?: number
}

export interface HandshakeResult {
  /** The peer's static public key, when the pattern carries or pins one. */
  readonly remoteStatic: Uint8Array | undefined
  readonly handshakeHash: Uint8Array
  /** Payloads of the handshake messages this side read, in order. */
  readonly payloads: readonly Uint8Array[]
}

export interface ChannelHandler {
  onHandshake?(result: HandshakeResult): void
  onMessage?(message: Message): void
  /** The peer sent an authenticated CLOSE; the channel has answered and closed. */
  onPeerClose?(code: number, reason: string): void
  /** The channel failed on received bytes; the transport is already closed. */
  onError?(error: KeymeshError): void
}

export interface ChannelOptions {
  readonly handshake: HandshakeState
  readonly transport: MessageTransport
  readonly handler: ChannelHandler
  readonly limits?: ChannelLimits
  /** Payload of handshake message `index` that this side writes, knowing what it has `read`; empty by default. */
  readonly payload?: (index: number, read: readonly Uint8Array[]) => Uint8Array
  /** Whether received records may hold binary KMS frames (the 'kms.frame' feature agreed); default never. */
  readonly kmsFrames?: () => boolean
}

export type ChannelState = 'new' | 'handshake' | 'open' | 'closed' | 'failed'

/** Normal closure (RFC 6455), used when a CLOSE is answered without a code of our own. */
export const CLOSE_NORMAL = 1000

export class NoiseChannel {
  readonly #hs: HandshakeState
  readonly #transport: MessageTransport
  readonly #handler: ChannelHandler
  readonly #limits: ChannelLimits
  readonly #payload: (index: number, read: readonly Uint8Array[]) => Uint8Array
  readonly #kmsFrames: () => boolean
  readonly #maxHandshake: number
  readonly #maxMessage: number
  readonly #read: Uint8Array[] = []
  #index = 0
  #state: ChannelState = 'new'
  #records: RecordSession | undefined

  constructor(o: ChannelOptions) {
    this.#hs = o.handshake
    this.#transport = o.transport
    this.#handler = o.handler
    this.#limits = o.limits ?? {}
    this.#payload = o.payload ?? (() => new Uint8Array(0))
    this.#kmsFrames = o.kmsFrames ?? (() => false)
    this.#maxHandshake = bounded('maxHandshakeBytes', this.#limits.maxHandshakeBytes, MAX_NOISE_MESSAGE)
    this.#maxMessage = bounded('maxMessageBytes', this.#limits.maxMessageBytes, MAX_MESSAGE_BYTES)
  }

  get state(): ChannelState {
    return this.#state
  }

  /** Begins the handshake; the initiator writes its first message here. Idempotent. */
  start(): void {
    if (this.#state !== 'new') return
    this.#state = 'handshake'
    this.#guard(() => this.#writeTurns())
  }

  /** One message from the transport. */
  receive(bytes: Uint8Array): void {
    if (this.#state === 'new') this.start()
    if (this.#state === 'failed') throw protoError('PROTO_ERR_SESSION_FAILED')
    if (this.#state === 'closed') throw protoError('PROTO_ERR_SESSION_CLOSED')
    if (this.#state === 'handshake') return this.#guard(() => this.#handshakeMessage(bytes))
    const records = this.#records as RecordSession
    let opened: ReturnType<RecordSession['open']> | undefined
    let message: Message | undefined
    this.#guard(() => {
      opened = records.open(bytes)
      if (opened.type === 'handshake') {
        // The control channel runs no in-band re-handshake (tunnel-session.ts does).
        opened.data.fill(0)
        throw protoError('PROTO_ERR_RECORD_TYPE', 'HANDSHAKE record on the control channel')
      }
      if (opened.type === 'data') {
        try {
          message = decodeMessage(opened.data, { maxBytes: this.#maxMessage, kmsFrames: this.#kmsFrames() })
        } finally {
          opened.data.fill(0)
        }
      }
    })
    // #guard may have failed the channel (TypeScript cannot see that through the closure).
    if ((this.#state as ChannelState) === 'failed' || opened === undefined) return
    if (message !== undefined) this.#handler.onMessage?.(message)
    else if (opened.type === 'close') {
      this.close(CLOSE_NORMAL, '')
      this.#handler.onPeerClose?.(opened.code, opened.reason)
    }
  }

  /** Encodes, seals and sends one control message. */
  send(message: Message): void {
    this.sendEncoded(encodeMessage(message), true)
  }

  /** Seals and sends an already encoded message; `wipe` zeroes it afterwards. */
  sendEncoded(encoded: Uint8Array, wipe = false): void {
    try {
      const records = this.#openRecords()
      if (encoded.length > this.#maxMessage) throw protoError('PROTO_ERR_MESSAGE_TOO_LARGE')
      this.#transport.send(records.seal(encoded))
    } finally {
      if (wipe) encoded.fill(0)
    }
  }

  /** Ends the channel: an authenticated CLOSE when the session is open, then the transport. Idempotent. */
  close(code: number, reason: string): void {
    if (this.#state === 'closed' || this.#state === 'failed') return
    const wasOpen = this.#state === 'open'
    this.#state = 'closed'
    if (wasOpen) {
      const records = this.#records as RecordSession
      try {
        if (records.state === 'open' || records.state === 'closed-remote') this.#transport.send(records.sealClose(code & 0xffff, reason))
      } catch {
        // A CLOSE that cannot be sealed (e.g. a reason too long) still closes the transport.
      }
      records.destroy()
    } else this.#hs.destroy()
    this.#transport.close(code, reason)
  }

  /** Fails the channel with `error` (closing the transport with its code). */
  fail(error: KeymeshError): void {
    if (this.#state === 'closed' || this.#state === 'failed') return
    this.#state = 'failed'
    this.#hs.destroy()
    this.#records?.destroy()
    this.#transport.close(error.closeCode, error.code)
    this.#handler.onError?.(error)
  }

  #openRecords(): RecordSession {
    if (this.#state === 'failed') throw protoError('PROTO_ERR_SESSION_FAILED')
    if (this.#state === 'closed') throw protoError('PROTO_ERR_SESSION_CLOSED')
    if (this.#state !== 'open' || !this.#records) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'channel is not open yet')
    return this.#records
  }

  #guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      if (!isKeymeshError(err)) throw err
      this.fail(err)
    }
  }

  #handshakeMessage(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array) || bytes.length > this.#maxHandshake) {
      throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `over ${this.#maxHandshake} bytes`)
    }
    if (this.#hs.isMyTurn) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'message received out of turn')
    this.#read.push(this.#hs.readMessage(bytes))
    this.#index++
    this.#writeTurns()
  }

  // Writes every handshake message that is ours to write next, then finishes if complete.
  #writeTurns(): void {
    while (this.#hs.isMyTurn) {
      this.#transport.send(this.#hs.writeMessage(this.#payload(this.#index, this.#read)))
      this.#index++
    }
    if (!this.#hs.isComplete) return
    const remoteStatic = this.#hs.remoteStatic
    const { send, recv, handshakeHash } = this.#hs.split()
    this.#records = new RecordSession({ send, recv, ...recordLimits(this.#limits) })
    this.#state = 'open'
    this.#handler.onHandshake?.({ remoteStatic, handshakeHash, payloads: this.#read.splice(0) })
  }
}

function recordLimits(l: ChannelLimits): RecordLimits {
  return {
    ...(l.maxRecordBytes !== undefined ? { maxRecordBytes: l.maxRecordBytes } : {}),
    ...(l.maxRecords !== undefined ? { maxRecords: l.maxRecords } : {}),
    ...(l.maxBytes !== undefined ? { maxBytes: l.maxBytes } : {}),
  }
}

function bounded(name: string, value: number | undefined, max: number): number {
  if (value === undefined) return max
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw protoError('PROTO_ERR_INVALID_ARGUMENT', `${name} must be an integer in 1..${max}`)
  return value
}
