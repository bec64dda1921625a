// Bounded fuzzing of everything that parses peer bytes before authentication: the
// readMessage of XK and KKpsk0 at every step, and decodeTunnelPreamble. The only
// allowed outcomes are success or a KeymeshError with a PROTO_ERR_* code.
//
// Each target runs a fixed number of inputs from a seeded PRNG, never a time
// budget: the same run covers the same inputs on a fast machine and a busy one.
// Reproduce a failure with KEYMESH_FUZZ_SEED=<seed printed below>; fuzz longer
// locally with KEYMESH_FUZZ_ITERATIONS (a multiple of the defaults below).
import t from 'tap'

import { nodeSuite as suite } from '../../../protocol/src/crypto/node-provider.js'
import { KeymeshError } from '../../../protocol/src/errors.js'
import type { HandshakeState } from '../../../protocol/src/noise/handshake-state.js'
import { createKkInitiator, createKkResponder, createXkInitiator, createXkResponder } from '../../../protocol/src/noise/keymesh-handshakes.js'
import { decodeTunnelPreamble, encodeTunnelPreamble } from '../../../protocol/src/noise/tunnel-preamble.js'
import { prng } from '../../kit/seeded-random.js'

const SEED = Number(process.env.KEYMESH_FUZZ_SEED ?? 0x5eed_1234) >>> 0
const SCALE = Number(process.env.KEYMESH_FUZZ_ITERATIONS ?? 1)
if (!(SCALE > 0)) throw new Error('KEYMESH_FUZZ_ITERATIONS must be a positive number (a multiple of the default input counts)')
/** Inputs per handshake step: each costs a fresh reader (a few X25519 operations). */
const HANDSHAKE_INPUTS = Math.round(1_000 * SCALE)
/** Inputs for the preamble decoder, which does no public-key work. */
const PREAMBLE_INPUTS = Math.round(10_000 * SCALE)


const LOW_ORDER = [
  new Uint8Array(32),
  Uint8Array.from([1, ...new Uint8Array(31)]),
  Uint8Array.from(Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex')),
  Uint8Array.from(Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex')),
]

function mutate(rand: () => number, valid: Uint8Array): Uint8Array {
  const int = (n: number): number => Math.floor(rand() * n)
  const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256))
  switch (int(7)) {
    case 0: {
      const out = new Uint8Array(valid)
      for (let k = 1 + int(3); k > 0 && out.length > 0; k--) {
        const i = int(out.length)
        out[i] = (out[i] as number) ^ (1 << int(8))
      }
      return out
    }
    case 1:
      return valid.slice(0, int(valid.length))
    case 2:
      return Uint8Array.from([...valid, ...randomBytes(1 + int(64))])
    case 3:
      return randomBytes(int(160))
    case 4: {
      const out = new Uint8Array(valid)
      out.set((LOW_ORDER[int(LOW_ORDER.length)] as Uint8Array).subarray(0, Math.min(32, out.length)))
      return out
    }
    case 5: {
      const out = new Uint8Array(valid)
      const i = int(out.length + 1)
      out.fill(rand() < 0.5 ? 0 : 0xff, i, i + 1 + int(16))
      return out
    }
    default:
      return valid.slice(int(valid.length + 1))
  }
}

const allowed = (e: unknown): e is KeymeshError => e instanceof KeymeshError && e.code.startsWith('PROTO_ERR_')

/** The slice of tap's Test this file uses. */
interface Reporter {
  fail(message: string): void
  pass(message: string): void
}

const payloadFor = (i: number): Uint8Array => Uint8Array.of(i, 1, 2, 3)

/**
 * Feeds mutations of message `step` to a fresh reader that has seen the steps before
 * it. Preset ephemerals make the transcript deterministic, so only the reader side
 * is rebuilt per input (X25519 dominates the cost).
 */
function fuzzStep(t: Reporter, label: string, seed: number, make: () => [HandshakeState, HandshakeState], step: number): void {
  const rand = prng(seed)
  const transcript: Uint8Array[] = []
  const [i0, r0] = make()
  for (let i = 0; i <= step; i++) {
    const [w, r] = i % 2 === 0 ? [i0, r0] : [r0, i0]
    transcript.push(w.writeMessage(payloadFor(i)))
    r.readMessage(transcript[i] as Uint8Array)
  }
  const valid = transcript[step] as Uint8Array
  const readerIsInit = step % 2 === 1
  const prepare = (): { reader: HandshakeState } => {
    const reader = make()[readerIsInit ? 0 : 1]
    for (let i = 0; i < step; i++) {
      if ((i % 2 === 0) === readerIsInit) reader.writeMessage(payloadFor(i))
      else reader.readMessage(transcript[i] as Uint8Array)
    }
    return { reader }
  }
  const outcomes = new Map<string, number>()
  let n = 0
  for (; n < HANDSHAKE_INPUTS; n++) {
    const { reader } = prepare()
    const input = mutate(rand, valid)
    let outcome = 'ok'
    try {
      reader.readMessage(input)
    } catch (e) {
      if (!allowed(e)) {
        t.fail(`${label}: iteration ${n} (seed ${seed}) threw ${String(e)}`)
        return
      }
      outcome = e.code
      // A failed state must refuse everything afterwards.
      try {
        reader.readMessage(valid)
        t.fail(`${label}: iteration ${n}: read after failure succeeded`)
      } catch (again) {
        if (!allowed(again) || again.code !== 'PROTO_ERR_HANDSHAKE_STATE') t.fail(`${label}: iteration ${n}: wrong error after failure`)
      }
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  }
  t.pass(`${label}: ${n} inputs, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`)
}

t.comment(`fuzz seed ${SEED} (set KEYMESH_FUZZ_SEED to reproduce), ${HANDSHAKE_INPUTS} inputs per handshake step, ${PREAMBLE_INPUTS} preamble inputs`)

const cp = suite.x25519FromSecret(new Uint8Array(32).fill(0xc1))
const agentA = suite.x25519FromSecret(new Uint8Array(32).fill(0xa1))
const agentB = suite.x25519FromSecret(new Uint8Array(32).fill(0xb1))
const eI = suite.x25519FromSecret(new Uint8Array(32).fill(0xe1))
const eR = suite.x25519FromSecret(new Uint8Array(32).fill(0xe2))
const psk = new Uint8Array(32).fill(0x55)
const context = { pairId: 'billing:orders', keyVersion: 7, fromService: 'orders', toService: 'billing', fromAgent: 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa' }

const makeXk = (): [HandshakeState, HandshakeState] => [
  createXkInitiator({ suite, staticKey: agentA, controlPlaneKey: cp.publicKey, ephemeral: eI }),
  createXkResponder({ suite, staticKey: cp, ephemeral: eR }),
]
const makeKk = (): [HandshakeState, HandshakeState] => [
  createKkInitiator({ suite, staticKey: agentA, remoteStatic: agentB.publicKey, psk, context, ephemeral: eI }),
  createKkResponder({ suite, staticKey: agentB, remoteStatic: agentA.publicKey, psk, context, ephemeral: eR }),
]

for (const step of [0, 1, 2]) {
  t.test(`XK message ${step + 1} reader survives mutated input`, async (t) => fuzzStep(t, `XK msg ${step + 1}`, SEED + step, makeXk, step))
}
for (const step of [0, 1]) {
  t.test(`KKpsk0 message ${step + 1} reader survives mutated input`, async (t) => fuzzStep(t, `KKpsk0 msg ${step + 1}`, SEED + 10 + step, makeKk, step))
}

t.test('decodeTunnelPreamble survives mutated input, and what it accepts round-trips', async (t) => {
  const rand = prng(SEED + 20)
  const valid = encodeTunnelPreamble(context)
  const outcomes = new Map<string, number>()
  let n = 0
  for (; n < PREAMBLE_INPUTS; n++) {
    const input = mutate(rand, valid)
    let outcome = 'ok'
    try {
      const ctx = decodeTunnelPreamble(input)
      if (Buffer.compare(encodeTunnelPreamble(ctx), input) !== 0) t.fail(`iteration ${n}: accepted input does not round-trip`)
    } catch (e) {
      if (!allowed(e)) {
        t.fail(`preamble iteration ${n} (seed ${SEED + 20}) threw ${String(e)}`)
        return
      }
      outcome = e.code
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  }
  t.pass(`preamble: ${n} inputs, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`)
})
