// The sealed key-set cache: the last key set the control plane sent, kept in the
// state directory so that an agent restarted while the control plane is down can
// still open tunnels until the cached versions expire.
//
// File (keyset.sealed, 0600, written atomically):
//
//   header (16 bytes)  "KMKS" | format version u8 (1) | 3 zero bytes | savedAt u64 BE (ms)
//   nonce  (12 bytes)  random
//   sealed             ChaCha20-Poly1305(key, nonce, plaintext, AD) || tag
//
//   key       = HKDF-SHA256(ikm = the agent's static private key, salt = empty,
//               info = "keymesh agent keyset cache v1", 32 bytes)
//   AD        = header || u16 len || agentId || u16 len || service
//               (the lengths keep the two names from sliding into each other)
//   plaintext = for each pair: u32 BE length || encodeMessage({type:'keyset.pair', pair})
//
// Decoding goes back through decodeMessage, so every field is re-validated by the
// same schemas as on the wire. Plaintext buffers are wiped after use.
//
// Contract:
//   - loadKeySetCache returns undefined when there is no cache file; a cache that
//     cannot be opened (damaged, another agent's, another service's, another
//     identity's) throws AGENT_ERR_KEYSET_CACHE, which the caller logs and ignores.
//   - Versions whose notAfter has passed are dropped, and so are pairs left
//     without their current version; the keys of what is dropped are wiped.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js'
import { AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from '../../protocol/src/index.js'
import { isKeymeshError } from '../../protocol/src/index.js'
import { decodeMessage, encodeMessage } from '../../protocol/src/index.js'
import { writeFileAtomicAsync } from '../../platform/src/index.js'
import { agentError } from './errors.js'
import { wipePair, type PairEntry } from './keyset.js'

export const KEYSET_CACHE_FILE = 'keyset.sealed'

const MAGIC = [0x4b, 0x4d, 0x4b, 0x53] // "KMKS"
const FORMAT_VERSION = 1
const HEADER_BYTES = 16
const KEY_INFO = new TextEncoder().encode('keymesh agent keyset cache v1')
const EMPTY = new Uint8Array(0)
const encoder = new TextEncoder()

export interface KeySetCacheOptions {
  readonly stateDir: string
  readonly staticKey: KeyPair
  readonly agentId: string
  readonly service: string
  readonly suite: CryptoSuite
  /** Clock ms: recorded on save, the expiry reference on load. */
  readonly now: number
}

/**
 * Seals `pairs` to DIR/keyset.sealed (atomically, 0600, fsync'd), off the event loop the
 * tunnels share; rejects with AGENT_ERR_KEYSET_CACHE when it cannot. The sealing is done
 * before the first await, so the file holds `pairs` as they were at the call.
 */
export async function saveKeySetCache(o: KeySetCacheOptions & { readonly pairs: readonly PairEntry[] }): Promise<void> {
  const plaintext = encodePairs(o.pairs)
  const header = new Uint8Array(HEADER_BYTES)
  header.set(MAGIC, 0)
  header[4] = FORMAT_VERSION
  new DataView(header.buffer).setBigUint64(8, BigInt(Math.max(0, Math.floor(o.now))))
  const nonce = o.suite.randomBytes(AEAD_NONCE_BYTES)
  const key = cacheKey(o)
  let sealed: Uint8Array
  try {
    sealed = o.suite.aeadSeal(key, nonce, plaintext, associatedData(header, o))
  } finally {
    key.fill(0)
    plaintext.fill(0)
  }
  const file = new Uint8Array(HEADER_BYTES + AEAD_NONCE_BYTES + sealed.length)
  file.set(header, 0)
  file.set(nonce, HEADER_BYTES)
  file.set(sealed, HEADER_BYTES + AEAD_NONCE_BYTES)
  const path = join(o.stateDir, KEYSET_CACHE_FILE)
  try {
    await writeFileAtomicAsync(path, file, 0o600)
  } catch (cause) {
    throw agentError('AGENT_ERR_KEYSET_CACHE', `cannot write ${path}`, { cause })
  }
}

/**
 * Runs `write` one at a time, for state that changes faster than it is written: a
 * change while a write is under way makes one more write once it is done (of the state
 * as it is then), however many changes came meanwhile. So the file ends holding the
 * latest state, and no older write can land after a newer one.
 */
export class LatestWriter {
  #writing = false
  #stale = false
  #done: Promise<void> = Promise.resolve()

  constructor(readonly write: () => Promise<void>) {}

  changed(): void {
    this.#stale = true
    if (this.#writing) return
    this.#writing = true
    this.#done = (async () => {
      try {
        while (this.#stale) {
          this.#stale = false
          await this.write()
        }
      } finally {
        // Cleared in the turn that saw nothing stale, so no change can slip between.
        this.#writing = false
      }
    })()
  }

  /** Resolves once no write is under way (a write that throws rejects this). */
  idle(): Promise<void> {
    return this.#done
  }
}

/** The cached pairs, minus what has expired by `now`; undefined when there is no cache. */
export function loadKeySetCache(o: KeySetCacheOptions): PairEntry[] | undefined {
  const path = join(o.stateDir, KEYSET_CACHE_FILE)
  let file: Buffer
  try {
    file = readFileSync(path)
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw agentError('AGENT_ERR_KEYSET_CACHE', `cannot read ${path}`, { cause })
  }
  const bytes = new Uint8Array(file.buffer, file.byteOffset, file.length)
  if (bytes.length < HEADER_BYTES + AEAD_NONCE_BYTES + AEAD_TAG_BYTES) throw damaged(path, 'too short')
  const header = bytes.subarray(0, HEADER_BYTES)
  if (MAGIC.some((b, i) => header[i] !== b)) throw damaged(path, 'not a keymesh key-set cache')
  if (header[4] !== FORMAT_VERSION) throw damaged(path, `format version ${header[4]} (this agent reads ${FORMAT_VERSION})`)
  const nonce = bytes.subarray(HEADER_BYTES, HEADER_BYTES + AEAD_NONCE_BYTES)
  const key = cacheKey(o)
  let plaintext: Uint8Array
  try {
    plaintext = o.suite.aeadOpen(key, nonce, bytes.subarray(HEADER_BYTES + AEAD_NONCE_BYTES), associatedData(header, o))
  } catch (cause) {
    throw agentError('AGENT_ERR_KEYSET_CACHE', `${path} does not open under this agent's identity (damaged, or another agent's)`, { cause })
  } finally {
    key.fill(0)
  }
  const pairs: PairEntry[] = []
  try {
    const view = new DataView(plaintext.buffer, plaintext.byteOffset, plaintext.length)
    for (let off = 0; off < plaintext.length; ) {
      if (off + 4 > plaintext.length) throw damaged(path, 'truncated entry')
      const len = view.getUint32(off)
      if (off + 4 + len > plaintext.length) throw damaged(path, 'truncated entry')
      const m = decodeMessage(plaintext.subarray(off + 4, off + 4 + len))
      if (m.type !== 'keyset.pair') throw damaged(path, `unexpected ${m.type} entry`)
      pairs.push(m.pair)
      off += 4 + len
    }
  } catch (err) {
    for (const p of pairs) wipePair(p)
    if (isKeymeshError(err) && err.code === 'AGENT_ERR_KEYSET_CACHE') throw err
    throw agentError('AGENT_ERR_KEYSET_CACHE', `${path}: an entry does not decode`, { cause: err })
  } finally {
    plaintext.fill(0)
  }
  return pairs.flatMap((p) => unexpired(p, o.now))
}

/** The pair without versions expired at `now`; nothing when its current version is gone. */
function unexpired(p: PairEntry, now: number): PairEntry[] {
  const live = p.versions.filter((v) => v.notAfter === null || v.notAfter > now)
  for (const v of p.versions) if (!live.includes(v)) v.key.fill(0)
  if (!live.some((v) => v.state === 'current')) {
    for (const v of live) v.key.fill(0)
    return []
  }
  return [live.length === p.versions.length ? p : { ...p, versions: live }]
}

/** u32 length || encoded keyset.pair message, for each pair; the pieces are wiped as they are copied. */
function encodePairs(pairs: readonly PairEntry[]): Uint8Array {
  const encoded: Uint8Array[] = []
  try {
    for (const pair of pairs) encoded.push(encodeMessage({ type: 'keyset.pair', pair }))
    const plaintext = new Uint8Array(encoded.reduce((n, e) => n + 4 + e.length, 0))
    const view = new DataView(plaintext.buffer)
    let off = 0
    for (const e of encoded) {
      view.setUint32(off, e.length)
      plaintext.set(e, off + 4)
      off += 4 + e.length
    }
    return plaintext
  } finally {
    for (const e of encoded) e.fill(0)
  }
}

function cacheKey(o: { staticKey: KeyPair; suite: CryptoSuite }): Uint8Array {
  return o.suite.hkdfSha256(o.staticKey.secretKey, EMPTY, KEY_INFO, AEAD_KEY_BYTES)
}

function associatedData(header: Uint8Array, o: { agentId: string; service: string }): Uint8Array {
  const agentId = encoder.encode(o.agentId)
  const service = encoder.encode(o.service)
  const ad = new Uint8Array(header.length + 2 + agentId.length + 2 + service.length)
  const view = new DataView(ad.buffer)
  ad.set(header, 0)
  let off = header.length
  view.setUint16(off, agentId.length)
  ad.set(agentId, off + 2)
  off += 2 + agentId.length
  view.setUint16(off, service.length)
  ad.set(service, off + 2)
  return ad
}

function damaged(path: string, why: string) {
  return agentError('AGENT_ERR_KEYSET_CACHE', `${path}: ${why}`)
}
