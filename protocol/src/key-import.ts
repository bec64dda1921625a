// Key import ("bring your own key"): the operator wraps key material to a one-time
// X25519 public key the control plane hands out (`keymesh key import-params`), so
// the material never travels in the clear; only the control plane, which holds the
// wrapping key's private half, unwraps it.
//
// The wrapping is not a construction of its own: it is the repository's x25519 drop,
// reused as-is (drop-header.ts, drop-stream.ts: ephemeral-static X25519, HKDF-SHA256
// over the header, ChaCha20-Poly1305 chunks with a last-chunk flag), with the whole
// material in one chunk. The header binds the blob to its import: recipient
// `control-plane`, key field = the import id, version 1, no sender (an outside
// party); editing any header byte makes the chunk fail to open.
//
// Contract: unwrapKeyImport returns the material only when the blob opens under the
// given secret and names the given import id; otherwise it throws a PROTO_ERR_*
// (PROTO_ERR_DROP_FORMAT for a blob that is not such a drop or names another import,
// PROTO_ERR_DECRYPT when it does not open). The caller wipes what it gets.
import type { CryptoSuite } from './crypto/suite.js'
import { decodeDropHeader, encodeDropHeader, MIN_DROP_CHUNK_SIZE, newDropHeader } from './drop-header.js'
import { DropOpener, DropSealer, x25519DropOpenSecret, x25519DropSecret } from './drop-stream.js'
import { protoError } from './errors.js'

/** The drop recipient a key-import blob names. */
export const KEY_IMPORT_RECIPIENT = 'control-plane'
/** Largest wrapped blob accepted: a header and one chunk of at most this much material. */
export const MAX_KEY_IMPORT_MATERIAL = 64
export const MAX_KEY_IMPORT_WRAPPED = 512

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
    p.fill(0)
  }
  return out
}

/** Wraps `material` for the import `importId` to the control plane's one-time `publicKey`. */
export function wrapKeyImport(suite: CryptoSuite, input: { importId: string; publicKey: Uint8Array; material: Uint8Array }): Uint8Array {
  if (input.material.length < 1 || input.material.length > MAX_KEY_IMPORT_MATERIAL) {
    throw protoError('PROTO_ERR_INVALID_KEY', `key material must be 1-${MAX_KEY_IMPORT_MATERIAL} bytes`)
  }
  const { ephemeralPublic, secret } = x25519DropSecret(suite, input.publicKey)
  try {
    const header = newDropHeader(suite, {
      mode: 'x25519', sender: '', recipient: KEY_IMPORT_RECIPIENT, key: input.importId, keyVersion: 1, chunkSize: MIN_DROP_CHUNK_SIZE, ephemeralPublic,
    })
    const headerBytes = encodeDropHeader(header)
    const sealer = new DropSealer(suite, header, headerBytes, secret)
    return concat([new Uint8Array(headerBytes), ...sealer.push(input.material), ...sealer.finish()])
  } finally {
    secret.fill(0)
  }
}

/** Opens a blob made by wrapKeyImport for `importId` with the wrapping key's secret. */
export function unwrapKeyImport(suite: CryptoSuite, input: { importId: string; secretKey: Uint8Array; wrapped: Uint8Array }): Uint8Array {
  const { wrapped } = input
  if (wrapped.length > MAX_KEY_IMPORT_WRAPPED) throw protoError('PROTO_ERR_DROP_FORMAT', `a wrapped key is at most ${MAX_KEY_IMPORT_WRAPPED} bytes`)
  const decoded = decodeDropHeader(wrapped)
  const h = decoded?.header
  if (decoded === undefined || h === undefined || h.mode !== 'x25519' || h.ephemeralPublic === undefined || h.recipient !== KEY_IMPORT_RECIPIENT ||
    h.key !== input.importId || h.keyVersion !== 1 || (h.senderKey ?? '') !== '') {
    throw protoError('PROTO_ERR_DROP_FORMAT', 'not a key wrapped for this import')
  }
  const secret = x25519DropOpenSecret(suite, input.secretKey, h.ephemeralPublic)
  let opener: DropOpener
  try {
    opener = new DropOpener(suite, h, wrapped.subarray(0, decoded.length), secret)
  } finally {
    secret.fill(0)
  }
  const parts = opener.push(wrapped.subarray(decoded.length))
  return concat([...parts, ...opener.finish()])
}
