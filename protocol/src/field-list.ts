// One injective encoding of a list of strings, for bytes that bind several fields
// together (Noise prologues, km1 associated data, context digests): each field as
// its u16 big-endian UTF-8 byte length, then the bytes. The list can be read back
// from the bytes, so no two lists encode alike ("ab","c" ≠ "a","bc").
import { protoError, type PROTO_ERRORS } from './errors.js'

const encoder = new TextEncoder()

/** Throws `code` (a PROTO_ERR_*) when a field is longer than 65,535 bytes. */
export function encodeFieldList(fields: readonly string[], code: keyof typeof PROTO_ERRORS = 'PROTO_ERR_INVALID_ARGUMENT'): Uint8Array {
  const parts = fields.map((f) => encoder.encode(f))
  let n = 0
  for (const p of parts) {
    if (p.length > 0xffff) throw protoError(code, 'field longer than 65535 bytes')
    n += 2 + p.length
  }
  const out = new Uint8Array(n)
  let off = 0
  for (const p of parts) {
    out[off] = p.length >>> 8
    out[off + 1] = p.length & 0xff
    out.set(p, off + 2)
    off += 2 + p.length
  }
  return out
}
