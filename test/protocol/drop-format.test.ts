import { createHash } from 'node:crypto'
import t from 'tap'

import { sealKm1 } from '../../protocol/src/ciphertext.js'
import { createNodeSuite, createStablelibSuite, nodeSuite, stablelibSuite, type CryptoSuite } from '../../protocol/src/crypto/index.js'
import {
  decodeDropHeader,
  DEFAULT_DROP_CHUNK_SIZE,
  dropChunkKey,
  dropSenderAuthenticated,
  dropSenderTerm,
  withSenderTerm,
  dropContext,
  DropOpener,
  DropSealer,
  encodeDropHeader,
  MAX_DROP_CHUNK_SIZE,
  MAX_DROP_HEADER_BYTES,
  MAX_DROP_WRAPPED_KEY,
  MIN_DROP_CHUNK_SIZE,
  newDropHeader,
  x25519DropOpenSecret,
  x25519DropSecret,
  type DropHeader,
} from '../../protocol/src/drop-format.js'
import { codeOf } from '../kit/errors.js'
import { seededRandom } from '../kit/seeded-random.js'
import { toHex } from '../kit/vectors.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]
const CS = MIN_DROP_CHUNK_SIZE // small chunks keep the exhaustive tests fast
const TAG = 16
const SECRET = new Uint8Array(32).fill(9)

/** Deterministic split points (mulberry32), so a failure names a reproducible split. */
function splitter(seed: number): (n: number) => number[] {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  return (n) => {
    const cuts: number[] = []
    for (let off = 0; off < n; ) {
      // Mostly small pieces, sometimes several chunks at once.
      const len = 1 + Math.floor(next() < 0.8 ? next() * 1500 : next() * 3 * CS)
      cuts.push(Math.min(len, n - off))
      off += len
    }
    return cuts
  }
}

function kmsHeader(suite: CryptoSuite, chunkSize = CS): { header: DropHeader; bytes: Uint8Array } {
  const parties = { sender: 'billing', recipient: 'partner-a' }
  const wrappedKey = sealKm1(suite, { key: 'partner-drops', version: 2 }, new Uint8Array(32).fill(5), SECRET, dropContext(parties))
  const header = newDropHeader(suite, { mode: 'kms', ...parties, key: 'partner-drops', keyVersion: 2, chunkSize, wrappedKey })
  return { header, bytes: encodeDropHeader(header) }
}

const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
const payload = (n: number): Uint8Array => seededRandom(`payload/${n}`)(n)

/** A whole drop file: header bytes, then the sealer's output for `plain` pushed in the given pieces. */
function sealDrop(suite: CryptoSuite, h: { header: DropHeader; bytes: Uint8Array }, plain: Uint8Array, pieces = [plain.length], secret: Uint8Array = SECRET): Uint8Array {
  const sealer = new DropSealer(suite, h.header, h.bytes, secret)
  const out: Uint8Array[] = [h.bytes]
  let off = 0
  for (const n of pieces) {
    out.push(...sealer.push(plain.subarray(off, off + n)))
    off += n
  }
  out.push(...sealer.finish())
  return concat(out)
}

interface Opened {
  /** Everything the opener handed out before it finished or threw. */
  plain: Uint8Array
  code: string
  /** The error's message, '' when it opened. */
  message: string
}

/** Opens a whole file as a reader would: header incrementally, then the payload in pieces. */
function openDrop(suite: CryptoSuite, file: Uint8Array, pieces = [file.length], secret: Uint8Array = SECRET): Opened {
  const got: Uint8Array[] = []
  let message = ''
  const code = codeOf(() => {
    try {
      open()
    } catch (e) {
      message = (e as Error).message
      throw e
    }
  })
  return { plain: concat(got), code, message }

  function open(): void {
    let off = 0
    let opener: DropOpener | undefined
    let buffered: Uint8Array = new Uint8Array(0)
    for (const n of pieces) {
      let piece: Uint8Array = file.subarray(off, off + n)
      off += n
      if (!opener) {
        buffered = concat([buffered, piece])
        const decoded = decodeDropHeader(buffered)
        if (!decoded) continue
        opener = new DropOpener(suite, decoded.header, buffered.subarray(0, decoded.length), secret)
        piece = buffered.subarray(decoded.length)
      }
      got.push(...opener.push(piece))
    }
    if (!opener) throw new Error('header incomplete')
    got.push(...opener.finish())
  }
}

const sizes = [0, 1, CS - 1, CS, CS + 1, 3 * CS + 5]

for (const suite of PROVIDERS) {
  t.test(`${suite.name}: round-trips every size edge with random push splits`, async (t) => {
    const split = splitter(42)
    for (const n of sizes) {
      const h = kmsHeader(suite)
      const plain = payload(n)
      const file = sealDrop(suite, h, plain, split(n))
      const chunks = Math.max(1, Math.ceil(n / CS))
      t.equal(file.length, h.bytes.length + n + chunks * TAG, `${n} bytes: ${chunks} chunk(s) of overhead`)
      t.equal(toHex(sealDrop(suite, h, plain)), toHex(file), `${n} bytes: the split does not change the file`)
      const opened = openDrop(suite, file, split(file.length))
      t.equal(opened.code, 'no error', `${n} bytes: opens`)
      t.equal(toHex(opened.plain), toHex(plain), `${n} bytes: same plaintext`)
    }
  })
}

t.test('round-trips at the default chunk size', async (t) => {
  const split = splitter(7)
  for (const n of [0, DEFAULT_DROP_CHUNK_SIZE, 2 * DEFAULT_DROP_CHUNK_SIZE + 3]) {
    const h = kmsHeader(nodeSuite, DEFAULT_DROP_CHUNK_SIZE)
    const plain = payload(n)
    const opened = openDrop(nodeSuite, sealDrop(nodeSuite, h, plain, split(n)), split(n + 1000))
    t.equal(opened.code, 'no error')
    t.equal(toHex(opened.plain), toHex(plain), `${n} bytes`)
  }
})

t.test('both providers write identical drops and open each other\'s', async (t) => {
  const plain = payload(2 * CS + 9)
  const a = kmsHeader(createNodeSuite({ random: seededRandom('drop') }))
  const b = kmsHeader(createStablelibSuite({ random: seededRandom('drop') }))
  t.equal(toHex(b.bytes), toHex(a.bytes), 'same header')
  const file = sealDrop(nodeSuite, a, plain)
  t.equal(toHex(sealDrop(stablelibSuite, b, plain)), toHex(file), 'same file')
  t.equal(toHex(openDrop(stablelibSuite, file).plain), toHex(plain))
})

t.test('chunks follow the documented STREAM construction', async (t) => {
  const h = kmsHeader(nodeSuite)
  const plain = payload(CS + 10)
  const file = sealDrop(nodeSuite, h, plain)
  const { key, ad } = dropChunkKey(nodeSuite, h.bytes, SECRET)
  t.equal(toHex(ad), toHex(createHash('sha256').update(h.bytes).digest()), 'AD is SHA-256 of the header')
  const nonce = (i: number, last: number): Uint8Array => {
    const n = new Uint8Array(12)
    n.set(h.header.noncePrefix)
    new DataView(n.buffer).setUint32(7, i)
    n[11] = last
    return n
  }
  const body = file.subarray(h.bytes.length)
  t.equal(toHex(nodeSuite.aeadOpen(key, nonce(0, 0), body.subarray(0, CS + TAG), ad)), toHex(plain.subarray(0, CS)), 'chunk 0, not last')
  t.equal(toHex(nodeSuite.aeadOpen(key, nonce(1, 1), body.subarray(CS + TAG), ad)), toHex(plain.subarray(CS)), 'chunk 1, last')
  const expectKey = nodeSuite.hkdfSha256(SECRET, ad, new TextEncoder().encode('keymesh drop v2'), 32)
  t.equal(toHex(key), toHex(expectKey), 'chunk key is HKDF(secret, SHA-256(header), "keymesh drop v2")')
  // A format-1 header (still read) keys its chunks with the format-1 label.
  const v1 = encodeDropHeader({ ...h.header, formatVersion: 1 })
  t.equal(v1[6], 1)
  t.equal(toHex(dropChunkKey(nodeSuite, v1, SECRET).key), toHex(nodeSuite.hkdfSha256(SECRET, nodeSuite.sha256(v1), new TextEncoder().encode('keymesh drop v1'), 32)), 'format 1: "keymesh drop v1"')
  t.equal(codeOf(() => dropChunkKey(nodeSuite, v1, new Uint8Array(64))), 'PROTO_ERR_INVALID_KEY', 'format 1 has no sender term')
})

for (const suite of PROVIDERS) {
  t.test(`${suite.name}: every single flipped byte, header or chunk, is refused without releasing altered plaintext`, async (t) => {
    const h = kmsHeader(suite)
    const plain = payload(2 * CS + 100)
    const file = sealDrop(suite, h, plain)
    const split = splitter(3)
    let refused = 0
    for (let i = 0; i < file.length; i++) {
      const bad = new Uint8Array(file)
      bad[i] = (bad[i] as number) ^ (i % 2 === 0 ? 0x01 : 0x80)
      const { plain: got, code } = openDrop(suite, bad, split(bad.length))
      const inHeader = i < h.bytes.length
      // Chunk k's plaintext starts at k * CS; nothing from the altered chunk on may be released.
      const safeLength = inHeader ? 0 : Math.floor((i - h.bytes.length) / (CS + TAG)) * CS
      if (code !== 'no error' && got.length <= safeLength && Buffer.compare(got, plain.subarray(0, got.length)) === 0) refused++
      else t.fail(`byte ${i}: ${code}, released ${got.length} bytes (at most ${safeLength} allowed)`)
    }
    t.equal(refused, file.length, `all ${file.length} positions refused`)
  })
}

t.test('a drop cut at every chunk boundary or inside a chunk is refused', async (t) => {
  const h = kmsHeader(nodeSuite)
  const plain = payload(3 * CS + 5)
  const file = sealDrop(nodeSuite, h, plain)
  const body = h.bytes.length
  for (let k = 0; k <= 3; k++) {
    const cut = body + k * (CS + TAG)
    t.equal(openDrop(nodeSuite, file.subarray(0, cut)).code, 'PROTO_ERR_DROP_TRUNCATED', `cut after ${k} chunk(s)`)
    for (const into of [1, TAG - 1, TAG, 100, CS + TAG - 1]) {
      if (cut + into >= file.length) continue
      // After a chunk that verified, a cut inside the next is a truncation; inside the
      // first, only a piece shorter than a tag can be told from a wrong key.
      const expected = k > 0 || into < TAG ? 'PROTO_ERR_DROP_TRUNCATED' : 'PROTO_ERR_DECRYPT'
      t.equal(openDrop(nodeSuite, file.subarray(0, cut + into)).code, expected, `cut ${into} bytes into chunk ${k}`)
    }
  }
  const lastByte = openDrop(nodeSuite, file.subarray(0, file.length - 1))
  t.equal(lastByte.code, 'PROTO_ERR_DROP_TRUNCATED', 'last byte missing')
  t.match(lastByte.message, /ends inside chunk 4, which does not verify after 3 that did: the file was cut short/)
  for (let n = 0; n < body; n++) t.equal(decodeDropHeader(file.subarray(0, n)), undefined, `header prefix of ${n} bytes is incomplete, not an error`)
})

t.test('swapped, duplicated, dropped and appended chunks are refused', async (t) => {
  const h = kmsHeader(nodeSuite)
  const file = sealDrop(nodeSuite, h, payload(3 * CS + 5))
  const head = file.subarray(0, h.bytes.length)
  const c = [0, 1, 2].map((k) => file.subarray(h.bytes.length + k * (CS + TAG), h.bytes.length + (k + 1) * (CS + TAG)))
  const last = file.subarray(h.bytes.length + 3 * (CS + TAG))
  const [c0, c1, c2] = c as [Uint8Array, Uint8Array, Uint8Array]
  t.equal(openDrop(nodeSuite, concat([head, c0, c1, c2, last])).code, 'no error', 'the pieces reassemble')
  t.equal(openDrop(nodeSuite, concat([head, c1, c0, c2, last])).code, 'PROTO_ERR_DECRYPT', 'two chunks swapped')
  t.equal(openDrop(nodeSuite, concat([head, c0, c0, c1, c2, last])).code, 'PROTO_ERR_DECRYPT', 'a chunk duplicated')
  t.equal(openDrop(nodeSuite, concat([head, c0, c2, last])).code, 'PROTO_ERR_DECRYPT', 'a chunk dropped')
  // An end that does not verify after chunks that did reads as a cut (or an altered end).
  t.equal(openDrop(nodeSuite, concat([head, c0, c1, c2, last, last])).code, 'PROTO_ERR_DROP_TRUNCATED', 'the final chunk twice')
  t.equal(openDrop(nodeSuite, concat([file, Uint8Array.of(0)])).code, 'PROTO_ERR_DROP_TRUNCATED', 'a byte appended after a short final chunk: the end does not verify (said as cut short, or its end altered)')
  // A full-size final chunk followed by anything is recognised as an extension.
  const fullLast = sealDrop(nodeSuite, h, payload(2 * CS))
  t.equal(openDrop(nodeSuite, concat([fullLast, Uint8Array.of(0)])).code, 'PROTO_ERR_DROP_TRAILING', 'a byte appended after a full final chunk')
  t.equal(openDrop(nodeSuite, concat([fullLast, c2])).code, 'PROTO_ERR_DROP_TRAILING', 'a chunk appended after a full final chunk')
  const other = sealDrop(nodeSuite, kmsHeader(nodeSuite), payload(CS + 1))
  t.equal(openDrop(nodeSuite, concat([head, other.subarray(other.length - CS - 1 - 2 * TAG)])).code, 'PROTO_ERR_DECRYPT', 'chunks from another drop')
})

t.test('the header codec round-trips both modes and is canonical', async (t) => {
  const kms = kmsHeader(nodeSuite)
  const decoded = decodeDropHeader(concat([kms.bytes, Uint8Array.of(1, 2, 3)]))
  t.ok(decoded)
  t.equal(decoded?.length, kms.bytes.length, 'length stops at the payload')
  t.same(decoded?.header, kms.header)
  t.equal(toHex(encodeDropHeader(decoded?.header as DropHeader)), toHex(kms.bytes))
  t.equal(toHex(kms.bytes.subarray(0, 8)), toHex(Uint8Array.of(0x4b, 0x4d, 0x44, 0x52, 0x4f, 0x50, 2, 1)), 'KMDROP, version 2, mode 1')
  const x = newDropHeader(nodeSuite, { mode: 'x25519', sender: '', recipient: 'partner-a', key: 'inbox', keyVersion: 7, ephemeralPublic: new Uint8Array(32).fill(4) })
  const xBytes = encodeDropHeader(x)
  t.same(decodeDropHeader(xBytes)?.header, x)
  t.equal(xBytes[7], 2, 'mode 2')
  t.equal(x.chunkSize, DEFAULT_DROP_CHUNK_SIZE)
  // The largest header the limits allow fits MAX_DROP_HEADER_BYTES.
  const long = (c: string): string => c.repeat(63)
  // A canonical km1 body cannot be 4n+1 characters long, so the longest is 432 here, one short of the limit.
  const wrappedKey = `km1:${long('k')}:4294967295:${'A'.repeat(MAX_DROP_WRAPPED_KEY - 4 - 63 - 12 - 1)}`
  const big = { ...kms.header, sender: long('s'), recipient: long('r'), key: long('k'), keyVersion: 4294967295, wrappedKey }
  t.equal(encodeDropHeader(big).length, MAX_DROP_HEADER_BYTES - 1)
  t.equal(codeOf(() => encodeDropHeader({ ...big, wrappedKey: `${wrappedKey}AA` })), 'PROTO_ERR_DROP_FORMAT', 'a wrapped key over the limit')
})

t.test('the header decoder refuses bad fields as soon as it sees them', async (t) => {
  const { bytes } = kmsHeader(nodeSuite)
  const edit = (i: number, v: number): Uint8Array => {
    const b = new Uint8Array(bytes)
    b[i] = v
    return b
  }
  t.equal(codeOf(() => decodeDropHeader(new TextEncoder().encode('PK\x03'))), 'PROTO_ERR_DROP_FORMAT', 'a zip file, from 3 bytes')
  t.equal(codeOf(() => decodeDropHeader(edit(6, 3))), 'PROTO_ERR_DROP_VERSION', 'format version 3')
  t.equal(codeOf(() => decodeDropHeader(edit(6, 3).subarray(0, 7))), 'PROTO_ERR_DROP_VERSION', 'format version 3, from 7 bytes')
  t.equal(codeOf(() => decodeDropHeader(edit(6, 0))), 'PROTO_ERR_DROP_VERSION', 'format version 0')
  t.equal(codeOf(() => decodeDropHeader(edit(6, 0))), 'PROTO_ERR_DROP_VERSION', 'format version 0')
  t.equal(codeOf(() => decodeDropHeader(edit(7, 3))), 'PROTO_ERR_DROP_FORMAT', 'mode 3')
  const chunk = (n: number): Uint8Array => {
    const b = new Uint8Array(bytes)
    new DataView(b.buffer).setUint32(8, n)
    return b
  }
  t.equal(codeOf(() => decodeDropHeader(chunk(MIN_DROP_CHUNK_SIZE - 1))), 'PROTO_ERR_DROP_FORMAT', 'chunk size below 4 KiB')
  t.equal(codeOf(() => decodeDropHeader(chunk(MAX_DROP_CHUNK_SIZE + 1))), 'PROTO_ERR_DROP_FORMAT', 'chunk size above 1 MiB')
  t.equal(codeOf(() => decodeDropHeader(concat([bytes.subarray(0, 19), Uint8Array.of(0xff, 0xff)]))), 'PROTO_ERR_DROP_FORMAT', 'an over-long sender length, before its bytes arrive')
  t.equal(codeOf(() => decodeDropHeader(edit(21, 0x42))), 'PROTO_ERR_DROP_FORMAT', 'upper-case sender')
  const h = kmsHeader(nodeSuite).header
  const bad: Array<[string, Partial<DropHeader>, string]> = [
    ['format version 3', { formatVersion: 3 as 2 }, 'PROTO_ERR_DROP_VERSION'],
    ['kms with a sender key', { senderKey: 'mine', senderKeyVersion: 1 }, 'PROTO_ERR_DROP_FORMAT'],
    ['empty sender in kms mode', { sender: '' }, 'PROTO_ERR_DROP_FORMAT'],
    ['bad recipient', { recipient: 'Partner' }, 'PROTO_ERR_DROP_FORMAT'],
    ['version 0', { keyVersion: 0 }, 'PROTO_ERR_DROP_FORMAT'],
    ['short nonce prefix', { noncePrefix: new Uint8Array(6) }, 'PROTO_ERR_DROP_FORMAT'],
    ['wrapped key of another version', { keyVersion: 3 }, 'PROTO_ERR_DROP_FORMAT'],
    ['wrapped key not km1', { wrappedKey: 'km1:partner-drops:2:AAAA' }, 'PROTO_ERR_DROP_FORMAT'],
    ['kms with an ephemeral key', { ephemeralPublic: new Uint8Array(32) }, 'PROTO_ERR_DROP_FORMAT'],
    ['x25519 without an ephemeral key', { mode: 'x25519', wrappedKey: undefined }, 'PROTO_ERR_DROP_FORMAT'],
    ['odd chunk size', { chunkSize: 5000.5 }, 'PROTO_ERR_DROP_FORMAT'],
  ]
  for (const [what, change, code] of bad) t.equal(codeOf(() => encodeDropHeader({ ...h, ...change })), code, what)
})

t.test('dropContext names the drop, sender and recipient', async (t) => {
  t.same(dropContext({ sender: 'billing', recipient: 'partner-a' }), { 'keymesh:drop': 'v1', 'keymesh:from': 'billing', 'keymesh:to': 'partner-a' })
})

for (const suite of PROVIDERS) {
  t.test(`${suite.name}: an x25519 drop opens only with the recipient's secret`, async (t) => {
    const recipient = suite.x25519Generate()
    const { ephemeralPublic, secret } = x25519DropSecret(suite, recipient.publicKey)
    const header = newDropHeader(suite, { mode: 'x25519', sender: '', recipient: 'partner-a', key: 'inbox', keyVersion: 1, chunkSize: CS, ephemeralPublic })
    const h = { header, bytes: encodeDropHeader(header) }
    const plain = payload(CS + 77)
    const file = sealDrop(suite, h, plain, [plain.length], secret)
    const decoded = decodeDropHeader(file)
    const openSecret = x25519DropOpenSecret(suite, recipient.secretKey, decoded?.header.ephemeralPublic as Uint8Array)
    t.equal(toHex(openSecret), toHex(secret), 'both sides agree')
    const opened = openDrop(suite, file, [file.length], openSecret)
    t.equal(opened.code, 'no error')
    t.equal(toHex(opened.plain), toHex(plain))
    const stranger = suite.x25519Generate()
    const wrong = x25519DropOpenSecret(suite, stranger.secretKey, ephemeralPublic)
    t.equal(openDrop(suite, file, [file.length], wrong).code, 'PROTO_ERR_DECRYPT', 'another key pair cannot open it')
    t.equal(codeOf(() => x25519DropOpenSecret(suite, recipient.secretKey, new Uint8Array(32))), 'PROTO_ERR_LOW_ORDER_POINT', 'a low-order ephemeral key')
    t.equal(codeOf(() => x25519DropOpenSecret(suite, recipient.secretKey, new Uint8Array(31))), 'PROTO_ERR_INVALID_KEY')
  })
}

t.test('a wrong secret fails on the first chunk and releases nothing', async (t) => {
  const h = kmsHeader(nodeSuite)
  const file = sealDrop(nodeSuite, h, payload(3 * CS))
  const opened = openDrop(nodeSuite, file, [file.length], new Uint8Array(32).fill(8))
  t.equal(opened.code, 'PROTO_ERR_DECRYPT')
  t.equal(opened.plain.length, 0)
  t.equal(codeOf(() => new DropOpener(nodeSuite, h.header, h.bytes, new Uint8Array(16))), 'PROTO_ERR_INVALID_KEY', 'a 16-byte secret')
  const other = kmsHeader(nodeSuite)
  t.equal(codeOf(() => new DropSealer(nodeSuite, h.header, other.bytes, SECRET)), 'PROTO_ERR_INVALID_ARGUMENT', 'header bytes of another header')
})

t.test('sealer and opener hold at most one chunk and keep no caller arrays', async (t) => {
  const h = kmsHeader(nodeSuite)
  const sealer = new DropSealer(nodeSuite, h.header, h.bytes, SECRET)
  const data = payload(5 * CS)
  const first = sealer.push(data)
  t.equal(first.length, 4, 'four chunks out, the fifth held until more data or finish')
  t.ok(first.every((c) => c.length === CS + TAG), 'inner chunks are full size')
  const tail = new Uint8Array(10).fill(1)
  const more = sealer.push(tail)
  tail.fill(2) // the sealer copied what it holds
  const end = sealer.finish()
  t.equal(more.length, 1)
  t.equal(end.length, 1)
  t.equal(end[0]?.length, 10 + TAG)
  const file = concat([h.bytes, ...first, ...more, ...end])
  const opener = new DropOpener(nodeSuite, h.header, h.bytes, SECRET)
  const body = new Uint8Array(file.subarray(h.bytes.length))
  const out = opener.push(body.subarray(0, 5 * (CS + TAG)))
  t.equal(out.length, 4, 'the opener also holds one full chunk back until more bytes come')
  const rest = body.subarray(5 * (CS + TAG))
  out.push(...opener.push(rest))
  rest.fill(0) // the opener copied what it holds
  out.push(...opener.finish())
  const expected = concat([data, new Uint8Array(10).fill(1)])
  t.equal(toHex(concat(out)), toHex(expected))
})

t.test('a finished, failed or destroyed stream refuses further use', async (t) => {
  const h = kmsHeader(nodeSuite)
  const sealer = new DropSealer(nodeSuite, h.header, h.bytes, SECRET)
  sealer.finish()
  t.equal(codeOf(() => sealer.push(Uint8Array.of(1))), 'PROTO_ERR_DROP_STATE', 'push after finish')
  t.equal(codeOf(() => sealer.finish()), 'PROTO_ERR_DROP_STATE', 'finish twice')
  const destroyed = new DropSealer(nodeSuite, h.header, h.bytes, SECRET)
  destroyed.destroy()
  t.equal(codeOf(() => destroyed.push(Uint8Array.of(1))), 'PROTO_ERR_DROP_STATE', 'push after destroy')
  const opener = new DropOpener(nodeSuite, h.header, h.bytes, SECRET)
  t.equal(codeOf(() => opener.push(new Uint8Array(2 * (CS + TAG)))), 'PROTO_ERR_DECRYPT')
  t.equal(codeOf(() => opener.push(new Uint8Array(1))), 'PROTO_ERR_DROP_STATE', 'push after a failure')
  t.equal(codeOf(() => opener.finish()), 'PROTO_ERR_DROP_STATE', 'finish after a failure')
})

t.test('format 2 x25519 headers carry a sender key, round-trip, and keep the rules', async (t) => {
  const eph = new Uint8Array(32).fill(4)
  const fields = { mode: 'x25519', sender: 'billing', recipient: 'globex', key: 'inbox', keyVersion: 7, ephemeralPublic: eph } as const
  const signed = newDropHeader(nodeSuite, { ...fields, senderKey: 'billing-id', senderKeyVersion: 3 })
  const bytes = encodeDropHeader(signed)
  t.same(decodeDropHeader(bytes)?.header, signed)
  t.equal(decodeDropHeader(bytes)?.length, bytes.length)
  t.ok(dropSenderAuthenticated(signed), 'a sender key authenticates the sender')
  const anon = newDropHeader(nodeSuite, fields)
  t.match(anon, { formatVersion: 2, senderKey: '', senderKeyVersion: 0 })
  t.notOk(dropSenderAuthenticated(anon), 'a bare sender name does not')
  t.same(decodeDropHeader(encodeDropHeader(anon))?.header, anon)
  t.ok(dropSenderAuthenticated(kmsHeader(nodeSuite).header), 'a kms drop: the control plane checked the sealer')
  // Every prefix of a format 2 header is incomplete, never wrong.
  for (let n = 0; n < bytes.length; n++) t.equal(decodeDropHeader(bytes.subarray(0, n)), undefined)
  const bad: Array<[string, Partial<DropHeader>]> = [
    ['a sender key without a sender', { sender: '' }],
    ['a sender key with version 0', { senderKeyVersion: 0 }],
    ['a bad sender key name', { senderKey: 'Bad Name' }],
    ['format 1 with a sender key', { formatVersion: 1 }],
  ]
  for (const [what, edit] of bad) t.equal(codeOf(() => encodeDropHeader({ ...signed, ...edit })), 'PROTO_ERR_DROP_FORMAT', what)
  t.equal(codeOf(() => encodeDropHeader({ ...anon, senderKeyVersion: 2 })), 'PROTO_ERR_DROP_FORMAT', 'no sender key, yet a version')
  // A format 1 x25519 header (still read) has no sender key fields.
  const v1 = { ...anon, formatVersion: 1 as const, senderKey: undefined, senderKeyVersion: undefined }
  const { senderKey: _k, senderKeyVersion: _v, ...v1Header } = v1
  const v1Bytes = encodeDropHeader(v1Header)
  t.equal(v1Bytes.length, bytes.length - (2 + 'billing-id'.length + 4), 'format 1 is the same but for the sender key fields')
  t.same(decodeDropHeader(v1Bytes)?.header, v1Header)
})

t.test('the sender term is bound to the header and mixes into the chunk key', async (t) => {
  const h = encodeDropHeader(newDropHeader(nodeSuite, { mode: 'x25519', sender: 'billing', recipient: 'globex', key: 'inbox', keyVersion: 1, ephemeralPublic: new Uint8Array(32).fill(4), senderKey: 'billing-id', senderKeyVersion: 1 }))
  const other = encodeDropHeader(newDropHeader(nodeSuite, { mode: 'x25519', sender: 'billing', recipient: 'globex', key: 'inbox', keyVersion: 1, ephemeralPublic: new Uint8Array(32).fill(4), senderKey: 'billing-id', senderKeyVersion: 1 }))
  const ss = new Uint8Array(32).fill(9)
  const term = dropSenderTerm(nodeSuite, h, ss)
  t.equal(toHex(term), toHex(nodeSuite.hkdfSha256(ss, nodeSuite.sha256(h), new TextEncoder().encode('keymesh drop v2 sender'), 32)))
  t.not(toHex(dropSenderTerm(nodeSuite, other, ss)), toHex(term), 'another header (another nonce prefix) gets another term')
  const ee = new Uint8Array(32).fill(5)
  t.not(toHex(dropChunkKey(nodeSuite, h, withSenderTerm(ee, term)).key), toHex(dropChunkKey(nodeSuite, h, ee).key))
  t.equal(codeOf(() => dropSenderTerm(nodeSuite, encodeDropHeader({ ...decodeDropHeader(h)!.header, formatVersion: 1, senderKey: undefined, senderKeyVersion: undefined } as DropHeader), ss)), 'PROTO_ERR_DROP_VERSION')
  // A sealer or opener keyed with a chunk key handed over gives the same bytes as one keyed with the secret.
  const header = decodeDropHeader(h)!.header
  const secret = withSenderTerm(ee, term)
  const a = new DropSealer(nodeSuite, header, h, secret)
  const b = new DropSealer(nodeSuite, header, h, { chunkKey: dropChunkKey(nodeSuite, h, secret).key })
  const plain = new Uint8Array(100).fill(1)
  t.equal(toHex(concat([...a.push(plain), ...a.finish()])), toHex(concat([...b.push(plain), ...b.finish()])))
  t.equal(codeOf(() => new DropOpener(nodeSuite, header, h, { chunkKey: new Uint8Array(31) })), 'PROTO_ERR_INVALID_KEY')
})
