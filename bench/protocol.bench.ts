// npm run bench:protocol — the protocol package's costs, for both crypto providers.
//
// Prints: AEAD seal+open throughput at 64 B .. 64 KiB; full XK and KKpsk0
// handshakes per second (both sides in one process) beside the X25519 work they
// must do, timed alone; and the record layer beside raw node:crypto
// ChaCha20-Poly1305 on the same buffers. Targets (issue 2), as ratios measured in
// this same run: record layer at 64 KiB >= 70% of raw node:crypto; a handshake
// <= 1.3x its X25519 operations.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

import { nodeSuite } from '../protocol/src/index.js'
import { stablelibSuite } from '../protocol/src/index.js'
import type { CryptoSuite } from '../protocol/src/index.js'
import { createKkInitiator, createKkResponder, createXkInitiator, createXkResponder } from '../protocol/src/index.js'
import { runHandshake } from './handshake.js'
import { pairId } from '../protocol/src/index.js'
import { RecordSession } from '../protocol/src/index.js'
import { TunnelSession, type TunnelHandler } from '../protocol/src/index.js'
import { CipherState } from '../protocol/src/index.js'
import { bestOf, fmt, measure, table } from './measure.js'

const SIZES = [64, 1024, 16 * 1024, 64 * 1024]
const RECORD_PAYLOAD = 65_535 - 9 - 16
const quick = process.argv.includes('--quick')
const MS = quick ? 150 : 500
const RUNS = quick ? 1 : 3

const mbps = (bytesPerOp: number, opsPerSec: number): number => (bytesPerOp * opsPerSec) / 1e6

// Raw node:crypto: the baseline every other figure is held against.
function rawSealOpen(key: Buffer, nonce: Buffer, data: Buffer): void {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
  const ct = c.update(data)
  c.final()
  const tag = c.getAuthTag()
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
  d.setAuthTag(tag)
  d.update(ct)
  d.final()
}

function aeadTable(): { raw64k: number } {
  const key = randomBytes(32)
  const nonce = randomBytes(12)
  const rows: Array<Array<string | number>> = []
  let raw64k = 0
  for (const size of SIZES) {
    const data = randomBytes(size)
    const raw = bestOf(RUNS, () => measure(() => rawSealOpen(key, nonce, data), MS))
    if (size === 64 * 1024) raw64k = mbps(size, raw.opsPerSec)
    const row: Array<string | number> = [`${size} B`, mbps(size, raw.opsPerSec)]
    for (const suite of [nodeSuite, stablelibSuite]) {
      const r = bestOf(RUNS, () => measure(() => {
        const sealed = suite.aeadSeal(key, nonce, data)
        suite.aeadOpen(key, nonce, sealed)
      }, MS))
      row.push(mbps(size, r.opsPerSec), `${fmt((100 * r.opsPerSec) / raw.opsPerSec)}%`)
    }
    rows.push(row)
  }
  console.log('\nAEAD ChaCha20-Poly1305, seal + open, MB/s of payload')
  console.log(table(['size', 'raw node', 'node', 'vs raw', 'stablelib', 'vs raw'], rows))
  return { raw64k }
}

interface HandshakeRun { name: string; keygens: number; dhs: number; run(suite: CryptoSuite): void }

function handshakeRuns(suite: CryptoSuite): HandshakeRun[] {
  const cp = suite.x25519Generate()
  const a = suite.x25519Generate()
  const b = suite.x25519Generate()
  const psk = suite.randomBytes(32)
  const context = { pairId: pairId('api', 'web'), keyVersion: 7, fromService: 'web', toService: 'api', fromAgent: 'agt_' + 'a'.repeat(26) }
  return [
    {
      // XK: each side makes one ephemeral and does three DH (es, ee, se).
      name: 'XK (agent -> control plane)',
      keygens: 2,
      dhs: 6,
      run: () => runHandshake(createXkInitiator({ suite, staticKey: a, controlPlaneKey: cp.publicKey }), createXkResponder({ suite, staticKey: cp })),
    },
    {
      // KKpsk0: each side makes one ephemeral and does four DH (es, ss, ee, se).
      name: 'KKpsk0 (agent -> agent)',
      keygens: 2,
      dhs: 8,
      run: () =>
        runHandshake(
          createKkInitiator({ suite, staticKey: a, remoteStatic: b.publicKey, psk, context }),
          createKkResponder({ suite, staticKey: b, remoteStatic: a.publicKey, psk, context }),
        ),
    },
  ]
}

function handshakeTable(): void {
  const rows: Array<Array<string | number>> = []
  for (const suite of [nodeSuite, stablelibSuite]) {
    const peer = suite.x25519Generate()
    const keygen = bestOf(RUNS, () => measure(() => suite.x25519Generate(), MS))
    // A fresh ephemeral per DH, as in a handshake (where the ephemeral is new each time).
    const dh = bestOf(RUNS, () => {
      const mine = suite.x25519Generate()
      return measure(() => suite.x25519(mine.secretKey, peer.publicKey), MS)
    })
    for (const hs of handshakeRuns(suite)) {
      const r = bestOf(RUNS, () => measure(() => hs.run(suite), MS))
      const x25519Ms = hs.keygens * keygen.msPerOp + hs.dhs * dh.msPerOp
      rows.push([suite.name, hs.name, r.opsPerSec, r.msPerOp, x25519Ms, `${(r.msPerOp / x25519Ms).toFixed(2)}x`])
    }
  }
  console.log('\nHandshakes, both sides in one process (target: <= 1.30x the X25519 work alone)')
  console.log(table(['provider', 'handshake', 'per s', 'ms each', 'X25519 ms', 'ratio'], rows))
}

function recordTable(raw64k: number): void {
  const rows: Array<Array<string | number>> = []
  for (const suite of [nodeSuite, stablelibSuite]) {
    for (const size of [1024, 16 * 1024, RECORD_PAYLOAD]) {
      rows.push(recordRow(suite, size, raw64k))
      rows.push(tunnelRow(suite, size, raw64k))
    }
  }
  console.log('\nRecord layer, seal + open per record, MB/s of payload (target at 64 KiB records: >= 70% of raw node)')
  console.log('(tunnel: the same through a pair of TunnelSessions, write() to onData)')
  console.log(table(['provider', 'payload', 'MB/s', 'records/s', 'vs raw node 64 KiB'], rows))
}

// A session pair straight from random keys: the record layer is measured, not the handshake.
function recordRow(suite: CryptoSuite, size: number, raw64k: number): Array<string | number> {
  const k1 = suite.randomBytes(32)
  const k2 = suite.randomBytes(32)
  const a = new RecordSession({ send: new CipherState(suite, k1), recv: new CipherState(suite, k2) })
  const b = new RecordSession({ send: new CipherState(suite, k2), recv: new CipherState(suite, k1) })
  const data = randomBytes(size)
  const r = bestOf(RUNS, () => measure(() => {
    b.open(a.seal(data))
  }, MS))
  const rate = mbps(size, r.opsPerSec)
  return [suite.name, `${size} B`, rate, r.opsPerSec, size === RECORD_PAYLOAD ? `${fmt((100 * rate) / raw64k)}%` : '-']
}

// Two TunnelSessions wired back to back: the record layer plus the session's own
// per-record work (state checks, limits, callbacks), which is the tunnel's hot path.
function tunnelRow(suite: CryptoSuite, size: number, raw64k: number): Array<string | number> {
  const a = suite.x25519Generate()
  const b = suite.x25519Generate()
  const psk = suite.randomBytes(32)
  const context = { pairId: pairId('api', 'web'), keyVersion: 7, fromService: 'web', toService: 'api', fromAgent: 'agt_' + 'a'.repeat(26) }
  const handler: TunnelHandler = { onOpen() {}, onData() {}, onEnd() {}, onRekeyed() {}, onError(e) { throw e } }
  let r: TunnelSession | undefined
  const i: TunnelSession = new TunnelSession({
    suite, staticKey: a, role: 'initiator', context, keys: { psk, remoteStatic: b.publicKey }, handler,
    send: (bytes) => r?.receive(bytes),
  })
  r = new TunnelSession({
    suite, staticKey: b, role: 'responder', resolve: () => ({ psk, remoteStatic: a.publicKey }), handler,
    send: (bytes) => i.receive(bytes),
  })
  i.start()
  const data = randomBytes(size)
  const rate = mbps(size, bestOf(RUNS, () => measure(() => i.write(data), MS)).opsPerSec)
  return [`${suite.name} tunnel`, `${size} B`, rate, rate * 1e6 / size, size === RECORD_PAYLOAD ? `${fmt((100 * rate) / raw64k)}%` : '-']
}

console.log(`keymesh protocol benchmark — node ${process.version}, ${quick ? 'quick' : 'full'} run, best of ${RUNS} x ${MS} ms per figure`)
const { raw64k } = aeadTable()
handshakeTable()
recordTable(raw64k)
