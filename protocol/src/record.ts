// The record layer: the transport after a Noise handshake. One record is one
// WebSocket binary message of at most 65,535 bytes:
//
//   byte 0      record type (DATA=1, CLOSE=2, REKEY=3, HANDSHAKE=4)
//   bytes 1-8   64-bit big-endian counter = the sender's CipherState nonce
//   bytes 9-    Noise transport message: encryptWithAd(ad = bytes 0-8, payload)
//
// Contract:
//   - The counter of every received record must be exactly the receiving
//     CipherState's next nonce (TCP is ordered, so a replay, reorder or gap is an
//     attack). It is checked before decryption, so a forged record costs no AEAD.
//   - Any receive error (malformed, too large, unknown type, counter, decrypt,
//     limit) fails the session: that call throws its own code and every later
//     call throws PROTO_ERR_SESSION_FAILED. Both keys are wiped.
//   - CLOSE ends one direction, like TLS close_notify with TCP half-close: it
//     carries an authenticated u16 code and a UTF-8 reason of at most 123 bytes,
//     so a truncated stream (no CLOSE) is detectable. After sealClose, sends throw
//     PROTO_ERR_SESSION_CLOSED; after a CLOSE is received, further records throw
//     PROTO_ERR_SESSION_CLOSED. The other direction stays usable until it closes
//     too; when both have closed, the keys are wiped.
//   - REKEY: a sender seals an empty REKEY record and then rekeys its sending
//     CipherState; the receiver rekeys its receiving state after opening it. The
//     counter continues across the rekey. keymesh itself sends none (a tunnel moves
//     to new keys by re-handshaking, which also restarts the limits), so this layer
//     only opens them.
//   - HANDSHAKE carries the messages of an in-band re-handshake (and the tunnel's
//     handshake confirmation) for tunnel-session.ts: a payload of 0..maxPayload
//     bytes, encrypted under the current keys, counted and limited like DATA. The
//     record layer gives it no meaning; a channel that runs no re-handshakes (the
//     control channel) treats it as PROTO_ERR_RECORD_TYPE.
//   - Hard limits: after maxRecords DATA/REKEY/HANDSHAKE records or maxBytes payload
//     bytes in one direction, seal throws PROTO_ERR_RECORD_LIMIT (a new handshake is
//     required) and open rejects the peer's records the same way. CLOSE is exempt
//     so a session at its limit can still end cleanly. This layer owns the counts;
//     a caller reads them (recordsSent, ...) and asks hasRoom() before a batch that
//     must go out whole.
import { plaintextLength } from './crypto/checks.js'
import { AEAD_TAG_BYTES, type Plaintext } from './crypto/suite.js'
import { protoError } from './errors.js'
import type { CipherState } from './noise/cipher-state.js'

export const RECORD_DATA = 1
export const RECORD_CLOSE = 2
export const RECORD_REKEY = 3
export const RECORD_HANDSHAKE = 4

export const RECORD_HEADER_BYTES = 9
/** Header and AEAD tag: the bytes a record adds to its payload. */
export const RECORD_OVERHEAD = RECORD_HEADER_BYTES + AEAD_TAG_BYTES
/** One WebSocket message; also the largest allowed maxRecordBytes. */
export const MAX_RECORD_BYTES = 65_535
/** The largest payload of one record at the default size: 65,510 bytes. */
export const MAX_RECORD_PAYLOAD = MAX_RECORD_BYTES - RECORD_OVERHEAD
export const DEFAULT_MAX_RECORDS = 2 ** 36
export const DEFAULT_MAX_BYTES = 2 ** 46
/** Longest CLOSE reason in UTF-8 bytes (a WebSocket close frame's limit, less the code). */
export const MAX_CLOSE_REASON_BYTES = 123

export interface RecordLimits {
  /** Largest record on the wire, header and tag included; 26..65535, default 65535. */
  maxRecordBytes?: number
  /** Hard limit on DATA, REKEY and HANDSHAKE records per direction; default 2^36. */
  maxRecords?: number
  /** Hard limit on payload bytes per direction; default 2^46. */
  maxBytes?: number
}

export interface RecordSessionOptions extends RecordLimits {
  /** The CipherState this side encrypts with (its nonce is the record counter). */
  send: CipherState
  /** The CipherState this side decrypts with. */
  recv: CipherState
}

export type OpenedRecord =
  | { type: 'data'; data: Uint8Array }
  | { type: 'close'; code: number; reason: string }
  | { type: 'rekey' }
  | { type: 'handshake'; data: Uint8Array }

/** open: both directions live; closed-local: we sent CLOSE; closed-remote: we received it. */
export type RecordSessionState = 'open' | 'closed-local' | 'closed-remote' | 'closed' | 'failed'

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

/** The limits with their defaults filled in; a bad one throws PROTO_ERR_INVALID_ARGUMENT. */
export function resolveRecordLimits(l: RecordLimits): Required<RecordLimits> {
  return {
    maxRecordBytes: checkLimit('maxRecordBytes', l.maxRecordBytes, RECORD_OVERHEAD + 1, MAX_RECORD_BYTES, MAX_RECORD_BYTES),
    maxRecords: checkLimit('maxRecords', l.maxRecords, 1, Number.MAX_SAFE_INTEGER, DEFAULT_MAX_RECORDS),
    maxBytes: checkLimit('maxBytes', l.maxBytes, 1, Number.MAX_SAFE_INTEGER, DEFAULT_MAX_BYTES),
  }
}

function checkLimit(name: string, value: number | undefined, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}`)
  }
  return value
}

export class RecordSession {
  readonly maxRecordBytes: number
  readonly maxRecords: number
  readonly maxBytes: number
  /** Largest payload of one record under maxRecordBytes. */
  readonly maxPayload: number

  #send: CipherState
  #recv: CipherState
  #sendClosed = false
  #recvClosed = false
  #failed = false
  #recordsSent = 0
  #bytesSent = 0
  #recordsReceived = 0
  #bytesReceived = 0

  constructor(options: RecordSessionOptions) {
    if (!options.send?.hasKey() || !options.recv?.hasKey() || options.send === options.recv) {
      // A CipherState without a key "encrypts" to plaintext: never let one carry records.
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'record session needs two distinct keyed cipher states')
    }
    this.#send = options.send
    this.#recv = options.recv
    const limits = resolveRecordLimits(options)
    this.maxRecordBytes = limits.maxRecordBytes
    this.maxRecords = limits.maxRecords
    this.maxBytes = limits.maxBytes
    this.maxPayload = this.maxRecordBytes - RECORD_OVERHEAD
  }

  get state(): RecordSessionState {
    if (this.#failed) return 'failed'
    if (this.#sendClosed) return this.#recvClosed ? 'closed' : 'closed-local'
    return this.#recvClosed ? 'closed-remote' : 'open'
  }

  /** DATA, REKEY and HANDSHAKE records sealed under these keys (CLOSE is not counted). */
  get recordsSent(): number {
    return this.#recordsSent
  }

  /** Payload bytes of those records. */
  get bytesSent(): number {
    return this.#bytesSent
  }

  /** DATA, REKEY and HANDSHAKE records opened under these keys. */
  get recordsReceived(): number {
    return this.#recordsReceived
  }

  /** Payload bytes of those records. */
  get bytesReceived(): number {
    return this.#bytesReceived
  }

  /**
   * Whether `records` more records carrying `bytes` payload bytes in all fit under
   * the hard limits: a caller that must send a batch whole (or keep a record back)
   * asks before sealing the first.
   */
  hasRoom(records: number, bytes: number): boolean {
    return this.#recordsSent + records <= this.maxRecords && this.#bytesSent + bytes <= this.maxBytes
  }

  /**
   * One DATA record carrying `data` (at most maxPayload bytes; empty is allowed),
   * given whole or in parts that are sealed as if joined (without a copy).
   */
  seal(data: Plaintext): Uint8Array {
    this.#checkSend()
    const n = plaintextLength(data)
    if (n > this.maxPayload) {
      throw protoError('PROTO_ERR_RECORD_TOO_LARGE', `payload over ${this.maxPayload} bytes`)
    }
    this.#checkSendLimit(1, n)
    return this.#seal(RECORD_DATA, data, n)
  }

  /** One HANDSHAKE record carrying `payload` (at most maxPayload bytes; empty is allowed). */
  sealHandshake(payload: Uint8Array): Uint8Array {
    this.#checkSend()
    if (payload.length > this.maxPayload) throw protoError('PROTO_ERR_RECORD_TOO_LARGE', `payload over ${this.maxPayload} bytes`)
    this.#checkSendLimit(1, payload.length)
    return this.#seal(RECORD_HANDSHAKE, payload, payload.length)
  }

  /** The authenticated CLOSE record for this direction; later sends throw PROTO_ERR_SESSION_CLOSED. */
  sealClose(code: number, reason = ''): Uint8Array {
    this.#checkSend()
    if (!Number.isInteger(code) || code < 0 || code > 0xffff) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'close code must be an integer in 0..65535')
    }
    if (typeof reason !== 'string') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'close reason must be a string')
    const text = utf8Encoder.encode(reason)
    if (text.length > MAX_CLOSE_REASON_BYTES) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', `close reason over ${MAX_CLOSE_REASON_BYTES} UTF-8 bytes`)
    }
    const payload = new Uint8Array(2 + text.length)
    payload[0] = code >>> 8
    payload[1] = code & 0xff
    payload.set(text, 2)
    const wire = this.#seal(RECORD_CLOSE, payload, payload.length)
    this.#sendClosed = true
    this.#wipeIfDone()
    return wire
  }

  /** Verifies and decrypts one record. Any error fails the session (see contract). */
  open(wire: Uint8Array): OpenedRecord {
    if (this.#failed) throw protoError('PROTO_ERR_SESSION_FAILED')
    if (this.#recvClosed) throw protoError('PROTO_ERR_SESSION_CLOSED', 'peer already sent CLOSE')
    try {
      return this.#open(wire)
    } catch (e) {
      this.#fail()
      throw e
    }
  }

  /** Wipes both keys; every later call throws PROTO_ERR_SESSION_FAILED. Idempotent. */
  destroy(): void {
    this.#fail()
  }

  #open(wire: Uint8Array): OpenedRecord {
    if (!(wire instanceof Uint8Array) || wire.length < RECORD_OVERHEAD) {
      throw protoError('PROTO_ERR_RECORD_MALFORMED', 'shorter than header and tag')
    }
    if (wire.length > this.maxRecordBytes) throw protoError('PROTO_ERR_RECORD_TOO_LARGE')
    const type = wire[0] as number
    if (type < RECORD_DATA || type > RECORD_HANDSHAKE) throw protoError('PROTO_ERR_RECORD_TYPE')
    const hi = ((wire[1] as number) << 24 | (wire[2] as number) << 16 | (wire[3] as number) << 8 | (wire[4] as number)) >>> 0
    const lo = ((wire[5] as number) << 24 | (wire[6] as number) << 16 | (wire[7] as number) << 8 | (wire[8] as number)) >>> 0
    // hi * 2^32 + lo is exact up to 2^53; a larger counter is never the next nonce anyway.
    if (hi > 0x1f_ffff || hi * 0x1_0000_0000 + lo !== this.#recv.nonce) throw protoError('PROTO_ERR_RECORD_COUNTER')
    const payloadBytes = wire.length - RECORD_OVERHEAD
    if (type !== RECORD_CLOSE) {
      if (this.#recordsReceived + 1 > this.maxRecords || this.#bytesReceived + payloadBytes > this.maxBytes) {
        throw protoError('PROTO_ERR_RECORD_LIMIT', 'peer exceeded the hard limit')
      }
    }
    const data = this.#recv.decryptWithAd(wire.subarray(0, RECORD_HEADER_BYTES), wire.subarray(RECORD_HEADER_BYTES))
    if (type === RECORD_DATA) {
      this.#recordsReceived++
      this.#bytesReceived += data.length
      return { type: 'data', data }
    }
    if (type === RECORD_HANDSHAKE) {
      this.#recordsReceived++
      this.#bytesReceived += data.length
      return { type: 'handshake', data }
    }
    if (type === RECORD_REKEY) {
      if (data.length !== 0) throw protoError('PROTO_ERR_RECORD_MALFORMED', 'REKEY record carries a payload')
      this.#recordsReceived++
      this.#recv.rekey()
      return { type: 'rekey' }
    }
    const close = parseClose(data)
    this.#recvClosed = true
    this.#wipeIfDone()
    return close
  }

  #checkSend(): void {
    if (this.#failed) throw protoError('PROTO_ERR_SESSION_FAILED')
    if (this.#sendClosed) throw protoError('PROTO_ERR_SESSION_CLOSED', 'CLOSE already sent')
  }

  #checkSendLimit(records: number, bytes: number): void {
    if (!this.hasRoom(records, bytes)) throw protoError('PROTO_ERR_RECORD_LIMIT')
  }

  // One wire buffer per record (pooled when large, see recycleRecord): the header is
  // written in place and used as the AD; the ciphertext is copied in behind it
  // (CipherState returns a fresh buffer). `bytes` is the payload's length.
  #seal(type: number, payload: Plaintext, bytes: number): Uint8Array {
    const wire = wireBuffer(RECORD_OVERHEAD + bytes)
    const n = this.#send.nonce
    const hi = Math.floor(n / 0x1_0000_0000)
    wire[0] = type
    wire.writeUInt32BE(hi, 1)
    wire.writeUInt32BE(n >>> 0, 5)
    this.#send.encryptWithAdInto(wire.subarray(0, RECORD_HEADER_BYTES), payload, wire, RECORD_HEADER_BYTES)
    if (type !== RECORD_CLOSE) {
      // CLOSE is exempt from the limits (see contract), so it is not counted.
      this.#recordsSent++
      this.#bytesSent += bytes
    }
    return wire
  }

  #wipeIfDone(): void {
    if (this.#sendClosed && this.#recvClosed) {
      this.#send.destroy()
      this.#recv.destroy()
    }
  }

  #fail(): void {
    this.#failed = true
    this.#send.destroy()
    this.#recv.destroy()
  }
}

// Wire buffers of large records, recycled. Allocating a fresh 64 KiB buffer costs
// far more than the copy into it (measured here: ~20-30 µs of CPU against ~1 µs,
// plus the garbage collections its external memory triggers), so a transport
// that knows when a record's bytes have left (a write callback) hands the buffer
// back with recycleRecord() and the next large record reuses it. Records of at
// most POOL_MIN_BYTES come from Node's small-buffer pool as before.
// Only buffers issued here and not yet returned are taken back (`issued`), so a
// buffer recycled twice, or one that was never ours, is ignored rather than shared.
// The pool holds ciphertext and public headers only, never key material.
const POOL_MIN_BYTES = 4 * 1024
const POOL_MAX = 64
const pool: Buffer[] = []
const issued = new WeakSet<ArrayBuffer>()

function wireBuffer(n: number): Buffer {
  if (n <= POOL_MIN_BYTES) return Buffer.allocUnsafe(n)
  const b = pool.pop() ?? Buffer.allocUnsafeSlow(MAX_RECORD_BYTES)
  issued.add(b.buffer as ArrayBuffer)
  return b.subarray(0, n)
}

/**
 * Hands the wire buffer of a sealed record back for reuse. Call it only once
 * nothing reads `wire` any more (its write completed); anything else is ignored.
 */
export function recycleRecord(wire: Uint8Array): void {
  const ab = wire.buffer
  if (!issued.has(ab as ArrayBuffer)) return
  issued.delete(ab as ArrayBuffer)
  if (pool.length < POOL_MAX) pool.push(Buffer.from(ab, 0, MAX_RECORD_BYTES))
}

function parseClose(payload: Uint8Array): OpenedRecord {
  if (payload.length < 2 || payload.length > 2 + MAX_CLOSE_REASON_BYTES) {
    throw protoError('PROTO_ERR_RECORD_MALFORMED', 'CLOSE payload has the wrong length')
  }
  const code = ((payload[0] as number) << 8) | (payload[1] as number)
  let reason: string
  try {
    reason = utf8Decoder.decode(payload.subarray(2))
  } catch (cause) {
    throw protoError('PROTO_ERR_RECORD_MALFORMED', 'CLOSE reason is not UTF-8', { cause })
  }
  return { type: 'close', code, reason }
}
