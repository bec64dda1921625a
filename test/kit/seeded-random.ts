// A reproducible random source for tests that need "random" bytes they can replay
// (sealing with known nonces, differential runs of the two crypto providers).
import { createHash } from 'node:crypto'

/** SHA-256 in counter mode over `seed`: a protocol RandomSource, a fresh buffer per call. */
export function seededRandom(seed: string): (n: number) => Uint8Array {
  let counter = 0
  return (n) => {
    const out = new Uint8Array(n)
    for (let off = 0; off < n; off += 32) {
      const block = createHash('sha256').update(`${seed}/${counter++}`).digest()
      out.set(block.subarray(0, Math.min(32, n - off)), off)
    }
    return out
  }
}

/** mulberry32: a small seeded generator of numbers in [0, 1), the same sequence on every run (fuzzing, seeded batches). */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
