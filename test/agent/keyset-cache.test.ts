// The sealed key-set cache: a round trip through the state directory, expired
// versions dropped on load, and every kind of tampering or mix-up refused with
// AGENT_ERR_KEYSET_CACHE.
import t from 'tap'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { KEYSET_CACHE_FILE, LatestWriter, loadKeySetCache, saveKeySetCache } from '../../agent/src/keyset-cache.js'
import type { PairEntry, PairVersion } from '../../agent/src/keyset.js'
import { nodeSuite } from '../../protocol/src/index.js'
import { encodeMessage } from '../../protocol/src/index.js'
import { formatPublicKey, pairId } from '../../protocol/src/index.js'
import { codeOf, codeOfAsync } from '../kit/errors.js'
import { FAKE_EPOCH, MINUTE } from '../kit/fake-clock.js'
import { until } from '../kit/wait.js'

const suite = nodeSuite
const AGENT_ID = 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa'
const OTHER_AGENT = 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbq'
const now = FAKE_EPOCH

function version(v: number, state: 'current' | 'previous', notAfter: number | null): PairVersion {
  return { version: v, key: suite.randomBytes(32), state, notAfter }
}

function pair(peer: string, versions: PairVersion[]): PairEntry {
  return {
    pairId: pairId('orders', peer),
    peerService: peer,
    mayInitiate: true,
    mayAccept: peer !== 'audit',
    versions,
    peers: [{ agentId: OTHER_AGENT, staticKey: formatPublicKey(suite.x25519Generate().publicKey), endpoint: 'ws://127.0.0.1:7001/v1/tunnel' }],
  }
}

/** Deep copies, so a test can compare with what it saved after the cache wiped anything. */
const copy = (pairs: PairEntry[]): PairEntry[] =>
  pairs.map((p) => ({ ...p, versions: p.versions.map((v) => ({ ...v, key: new Uint8Array(v.key) })), peers: p.peers.map((x) => ({ ...x })) }))

function setup(t: { testdir(): string }) {
  const stateDir = t.testdir()
  const staticKey = suite.x25519Generate()
  const base = { stateDir, staticKey, agentId: AGENT_ID, service: 'orders', suite }
  return { stateDir, staticKey, base, path: join(stateDir, KEYSET_CACHE_FILE) }
}

const keyTexts = (pairs: PairEntry[]): string[] =>
  pairs.flatMap((p) => p.versions.flatMap((v) => [Buffer.from(v.key).toString('base64'), Buffer.from(v.key).toString('hex')]))

t.test('a saved key set loads back identical, from a 0600 file that holds no key in the clear', async (t) => {
  const { base, path } = setup(t)
  const pairs = [pair('billing', [version(2, 'current', null), version(1, 'previous', now + 5 * MINUTE)]), pair('audit', [version(7, 'current', null)])]
  const expected = copy(pairs)
  await saveKeySetCache({ ...base, pairs, now })
  t.equal(statSync(path).mode & 0o777, 0o600)
  t.same(pairs, expected, 'saving leaves the caller\'s pairs intact')
  const file = readFileSync(path)
  t.equal(file.subarray(0, 4).toString('latin1'), 'KMKS', 'versioned header')
  t.notOk(keyTexts(expected).some((k) => file.toString('latin1').includes(k) || file.toString('base64').includes(k)), 'no key text in the file')
  t.notOk(expected.some((p) => p.versions.some((v) => file.includes(Buffer.from(v.key)))), 'no raw key bytes in the file')
  t.same(loadKeySetCache({ ...base, now }), expected)
})

t.test('no cache file is undefined, not an error', async (t) => {
  const { base } = setup(t)
  t.equal(loadKeySetCache({ ...base, now }), undefined)
})

t.test('an empty key set round-trips as an empty list', async (t) => {
  const { base } = setup(t)
  await saveKeySetCache({ ...base, pairs: [], now })
  t.same(loadKeySetCache({ ...base, now }), [])
})

t.test('expired versions are dropped on load, and pairs left without a current version too', async (t) => {
  const { base } = setup(t)
  const pairs = [
    pair('billing', [version(2, 'current', null), version(1, 'previous', now + 1 * MINUTE)]),
    pair('audit', [version(4, 'current', now + 2 * MINUTE)]),
    pair('search', [version(9, 'current', now + 10 * MINUTE), version(8, 'previous', now + 3 * MINUTE)]),
  ]
  const expected = copy(pairs)
  await saveKeySetCache({ ...base, pairs, now })
  const later = loadKeySetCache({ ...base, now: now + 5 * MINUTE }) ?? []
  t.same(
    later.map((p) => [p.pairId, p.versions.map((v) => v.version)]),
    [
      ['billing:orders', [2]],
      ['orders:search', [9]],
    ],
  )
  t.same(later[0]?.versions[0]?.key, expected[0]?.versions[0]?.key, 'the surviving key is intact')
  t.same(loadKeySetCache({ ...base, now: now + 30 * MINUTE })?.map((p) => p.pairId), ['billing:orders'], 'only versions without an end survive long')
  t.same(loadKeySetCache({ ...base, now: now + 1 * MINUTE - 1 })?.[0]?.versions.map((v) => v.version), [2, 1], 'valid until notAfter')
})

t.test('a tampered, truncated or foreign cache file is AGENT_ERR_KEYSET_CACHE', async (t) => {
  const { base, path } = setup(t)
  await saveKeySetCache({ ...base, pairs: [pair('billing', [version(1, 'current', null)])], now })
  const good = readFileSync(path)
  // Header magic, version, savedAt, nonce, ciphertext, tag.
  for (const at of [0, 4, 12, 20, 40, good.length - 1]) {
    const bad = Buffer.from(good)
    bad[at] = (bad[at] as number) ^ 0x01
    writeFileSync(path, bad)
    t.equal(codeOf(() => loadKeySetCache({ ...base, now })), 'AGENT_ERR_KEYSET_CACHE', `byte ${at} flipped`)
  }
  for (const len of [0, 10, 28, good.length - 1]) {
    writeFileSync(path, good.subarray(0, len))
    t.equal(codeOf(() => loadKeySetCache({ ...base, now })), 'AGENT_ERR_KEYSET_CACHE', `truncated to ${len}`)
  }
  writeFileSync(path, Buffer.concat([good, Buffer.from([0])]))
  t.equal(codeOf(() => loadKeySetCache({ ...base, now })), 'AGENT_ERR_KEYSET_CACHE', 'extended')
  writeFileSync(path, good)
  t.ok(loadKeySetCache({ ...base, now }), 'the original still opens')
})

t.test('the cache of another agent, service or identity does not open', async (t) => {
  const { base } = setup(t)
  await saveKeySetCache({ ...base, pairs: [pair('billing', [version(1, 'current', null)])], now })
  t.equal(codeOf(() => loadKeySetCache({ ...base, agentId: OTHER_AGENT, now })), 'AGENT_ERR_KEYSET_CACHE', 'another agent id')
  t.equal(codeOf(() => loadKeySetCache({ ...base, service: 'billing', now })), 'AGENT_ERR_KEYSET_CACHE', 'another service')
  t.equal(codeOf(() => loadKeySetCache({ ...base, staticKey: suite.x25519Generate(), now })), 'AGENT_ERR_KEYSET_CACHE', 'another identity')
  t.ok(loadKeySetCache({ ...base, now }), 'its own agent opens it')
})

/** Seals `plaintext` exactly as the file comment of keyset-cache.ts specifies. */
function sealByHand(o: { staticKey: { secretKey: Uint8Array }; agentId: string; service: string }, plaintext: Uint8Array): Buffer {
  const header = Buffer.alloc(16)
  header.write('KMKS', 0, 'latin1')
  header[4] = 1
  header.writeBigUInt64BE(BigInt(now), 8)
  const key = suite.hkdfSha256(o.staticKey.secretKey, new Uint8Array(0), Buffer.from('keymesh agent keyset cache v1'), 32)
  const lp = (s: string) => {
    const b = Buffer.from(s)
    const len = Buffer.alloc(2)
    len.writeUInt16BE(b.length)
    return Buffer.concat([len, b])
  }
  const ad = Buffer.concat([header, lp(o.agentId), lp(o.service)])
  const nonce = suite.randomBytes(12)
  return Buffer.concat([header, nonce, suite.aeadSeal(key, nonce, plaintext, ad)])
}

const entry = (bytes: Uint8Array): Buffer => {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(bytes.length)
  return Buffer.concat([len, bytes])
}

t.test('the file format is the documented one, and every sealed entry is re-validated on load', async (t) => {
  const { base, path } = setup(t)
  const good = pair('billing', [version(1, 'current', null)])
  const expected = copy([good])
  writeFileSync(path, sealByHand(base, entry(encodeMessage({ type: 'keyset.pair', pair: good }))))
  t.same(loadKeySetCache({ ...base, now }), expected, 'a hand-sealed file opens')

  const cases: [string, Buffer][] = [
    ['another message type', entry(encodeMessage({ type: 'keyset.end', generation: 1 }))],
    ['not JSON', entry(Buffer.from('{"type":'))],
    ['a field out of range', entry(Buffer.from(JSON.stringify({ type: 'keyset.pair', pair: { pairId: 'x' } })))],
    ['a truncated length prefix', Buffer.from([0, 0])],
    ['a length past the end', Buffer.concat([entry(encodeMessage({ type: 'keyset.pair', pair: good })), Buffer.from([0, 0, 1, 0, 1])])],
  ]
  for (const [what, plaintext] of cases) {
    writeFileSync(path, sealByHand(base, plaintext))
    t.equal(codeOf(() => loadKeySetCache({ ...base, now })), 'AGENT_ERR_KEYSET_CACHE', what)
  }
})

t.test('a pair that breaks the schema is not saved', async (t) => {
  const { base } = setup(t)
  const bad = pair('billing', [version(2, 'current', null), version(1, 'current', null)])
  t.equal(await codeOfAsync(saveKeySetCache({ ...base, pairs: [bad], now })), 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('a cache that cannot be written is AGENT_ERR_KEYSET_CACHE', async (t) => {
  const { base, stateDir } = setup(t)
  t.equal(await codeOfAsync(saveKeySetCache({ ...base, stateDir: join(stateDir, 'missing'), pairs: [], now })), 'AGENT_ERR_KEYSET_CACHE')
})

t.test('LatestWriter: one write at a time; changes during a write make one more write, of the state as it is then', async (t) => {
  let state = 0
  const written: number[] = []
  const releases: Array<() => void> = []
  const w = new LatestWriter(async () => {
    const snapshot = state
    await new Promise<void>((resolve) => releases.push(resolve))
    written.push(snapshot)
  })
  await w.idle()
  t.same(written, [], 'nothing written before a change')
  state = 1
  w.changed()
  for (state = 2; state <= 5; state++) w.changed()
  state = 5
  t.equal(releases.length, 1, 'one write under way, the other changes wait')
  releases.shift()?.()
  await until(() => releases.length === 1, 'the write after it')
  releases.shift()?.()
  await w.idle()
  t.same(written, [1, 5], 'the first state, then the latest one once: no stale write lands last')
  w.changed()
  t.equal(releases.length, 1, 'a later change writes again')
  releases.shift()?.()
  await w.idle()
  t.same(written, [1, 5, 5])
})
