// A bounds-checked reader over one buffer, for the binary formats: every length is
// checked against the bytes left (and a length prefix against its bound) before a
// byte is read, and a short or oversized field is the format's own typed error
// (`fail`), naming the field, never its bytes.
const TWO_32 = 2 ** 32

export class ByteReader {
  at = 0

  /** `fail` throws the format's error for a detail; `noun` names the whole ("frame", "body"). */
  constructor(readonly buf: Buffer, readonly fail: (detail: string) => never, readonly noun: string) {}

  need(n: number, what: string): void {
    if (n > this.buf.length - this.at) this.fail(`${what}: runs past the end of the ${this.noun}`)
  }
  u8(what: string): number {
    this.need(1, what)
    return this.buf[this.at++] as number
  }
  u16(what: string): number {
    this.need(2, what)
    const v = this.buf.readUInt16BE(this.at)
    this.at += 2
    return v
  }
  u32(what: string): number {
    this.need(4, what)
    const v = this.buf.readUInt32BE(this.at)
    this.at += 4
    return v
  }
  /** A u64 that must be a safe integer from 1 (an id). */
  id(what: string): number {
    this.need(8, what)
    const hi = this.buf.readUInt32BE(this.at)
    const lo = this.buf.readUInt32BE(this.at + 4)
    this.at += 8
    const v = hi * TWO_32 + lo
    if (hi > 0x1f_ffff || v < 1) this.fail(`${what}: must be in 1..9007199254740991`)
    return v
  }
  /** A length prefix of `width` bytes, checked against `max` and the bytes left. */
  length(width: 1 | 2 | 4, max: number, what: string): number {
    const n = width === 1 ? this.u8(what) : width === 2 ? this.u16(what) : this.u32(what)
    if (n > max) this.fail(`${what}: longer than ${max} bytes`)
    this.need(n, what)
    return n
  }
  /** `n` bytes as text (latin1 unless said; callers check the characters). */
  text(n: number, what: string, encoding: 'latin1' | 'utf8' = 'latin1'): string {
    this.need(n, what)
    const s = this.buf.toString(encoding, this.at, this.at + n)
    this.at += n
    return s
  }
  /** A view of `n` bytes (the reader's buffer is the caller's own copy). */
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what)
    const b = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.at, n)
    this.at += n
    return b
  }
}
