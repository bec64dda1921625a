// Every 25519/ChaChaPoly/SHA256 vector from cacophony, through both crypto providers.
//
// Conventions of the vector file (checked against the bytes): messages alternate
// initiator, responder, ... and continue past the handshake into transport messages
// with the split CipherStates; for one-way patterns every message is the initiator's.
import t from 'tap'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/crypto/suite.js'
import { nodeSuite } from '../../../protocol/src/crypto/node-provider.js'
import { stablelibSuite } from '../../../protocol/src/crypto/stablelib-provider.js'
import type { CipherState } from '../../../protocol/src/noise/cipher-state.js'
import { HandshakeState } from '../../../protocol/src/noise/handshake-state.js'
import { hex, loadVectors, toHex } from '../../kit/vectors.js'

interface Vector {
  protocol_name: string
  init_prologue: string
  init_psks?: string[]
  init_static?: string
  init_ephemeral?: string
  init_remote_static?: string
  resp_prologue: string
  resp_psks?: string[]
  resp_static?: string
  resp_ephemeral?: string
  resp_remote_static?: string
  handshake_hash: string
  messages: { payload: string; ciphertext: string }[]
}

const loaded = loadVectors<{ vectors: Vector[] }>('noise/cacophony-25519-chachapoly-sha256.json')

function build(suite: CryptoSuite, v: Vector, initiator: boolean): HandshakeState {
  const side = initiator ? 'init' : 'resp'
  const pair = (secret: string | undefined): KeyPair | undefined => (secret ? suite.x25519FromSecret(hex(secret)) : undefined)
  const s = pair(v[`${side}_static`])
  const e = pair(v[`${side}_ephemeral`])
  const rs = v[`${side}_remote_static`]
  const psks = v[`${side}_psks`]
  return new HandshakeState({
    suite,
    protocolName: v.protocol_name,
    initiator,
    prologue: hex(v[`${side}_prologue`]),
    ...(s ? { s } : {}),
    ...(e ? { e } : {}),
    ...(rs ? { rs: hex(rs) } : {}),
    ...(psks ? { psks: psks.map(hex) } : {}),
  })
}

if ('skip' in loaded) {
  t.plan(0, loaded.skip)
} else {
  const vectors = loaded.data.vectors
  for (const suite of [nodeSuite, stablelibSuite]) {
    t.test(`cacophony vectors through the ${suite.name} provider`, async (t) => {
      let count = 0
      let handshakeMessages = 0
      let transportMessages = 0
      for (const v of vectors) {
        const init = build(suite, v, true)
        const resp = build(suite, v, false)
        const oneWay = init.pattern.oneWay
        let transport: { i: { send: CipherState; recv: CipherState | null }; r: { send: CipherState | null; recv: CipherState } } | null = null
        let ok = true
        v.messages.forEach((m, idx) => {
          const fromInit = oneWay || idx % 2 === 0
          const payload = hex(m.payload)
          let ct: Uint8Array
          let pt: Uint8Array
          if (!init.isComplete) {
            const [w, r] = fromInit ? [init, resp] : [resp, init]
            ct = w.writeMessage(payload)
            pt = r.readMessage(ct)
            handshakeMessages++
          } else {
            if (transport === null) {
              t.ok(resp.isComplete, `${v.protocol_name}: both sides complete`)
              const hi = toHex(init.handshakeHash)
              t.equal(hi, v.handshake_hash, `${v.protocol_name}: initiator handshake hash`)
              t.equal(toHex(resp.handshakeHash), v.handshake_hash, `${v.protocol_name}: responder handshake hash`)
              if (oneWay) {
                const a = init.splitOneWay()
                const b = resp.splitOneWay()
                transport = { i: { send: a.cipher, recv: null }, r: { send: null, recv: b.cipher } }
              } else {
                const a = init.split()
                const b = resp.split()
                t.equal(toHex(a.handshakeHash), v.handshake_hash)
                transport = { i: a, r: b }
              }
            }
            const [send, recv] = fromInit ? [transport.i.send, transport.r.recv] : [transport.r.send, transport.i.recv]
            ct = (send as CipherState).encryptWithAd(new Uint8Array(0), payload)
            pt = (recv as CipherState).decryptWithAd(new Uint8Array(0), ct)
            transportMessages++
          }
          if (toHex(ct) !== m.ciphertext || toHex(pt) !== m.payload) ok = false
          t.equal(toHex(ct), m.ciphertext, `${v.protocol_name} message ${idx} ciphertext`)
          t.equal(toHex(pt), m.payload, `${v.protocol_name} message ${idx} payload`)
        })
        t.ok(transport !== null, `${v.protocol_name}: reached transport`)
        t.ok(ok, `${v.protocol_name}: all messages match`)
        count++
      }
      t.equal(count, vectors.length, 'every vector in the file ran')
      t.equal(count, 59)
      t.comment(`${suite.name}: ${count} vectors, ${handshakeMessages} handshake messages, ${transportMessages} transport messages`)
    })
  }
}
