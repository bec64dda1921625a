// A minimal ustar writer (POSIX.1-1988 tar, the format `tar` reads by default):
// regular files only, each a 512-byte header and its bytes padded to 512, then two
// zero blocks. Enough for `keymesh debug bundle`; names must fit the 100-byte field.
export interface TarEntry { readonly name: string; readonly data: Uint8Array; readonly mode?: number; readonly mtime?: number }

const BLOCK = 512

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0'
}

function header(e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK)
  const name = Buffer.from(e.name, 'utf8')
  if (name.length > 100) throw new Error(`tar entry name too long: ${e.name}`)
  name.copy(h, 0)
  h.write(octal(e.mode ?? 0o600, 8), 100, 'ascii')
  h.write(octal(0, 8), 108, 'ascii')
  h.write(octal(0, 8), 116, 'ascii')
  h.write(octal(size, 12), 124, 'ascii')
  h.write(octal(Math.floor((e.mtime ?? 0) / 1000), 12), 136, 'ascii')
  h.write('        ', 148, 'ascii')
  h.write('0', 156, 'ascii')
  h.write('ustar\0' + '00', 257, 'ascii')
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii')
  return h
}

export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    parts.push(header(e, e.data.length), Buffer.from(e.data))
    const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK
    if (pad > 0) parts.push(Buffer.alloc(pad))
  }
  parts.push(Buffer.alloc(2 * BLOCK))
  return Buffer.concat(parts)
}
