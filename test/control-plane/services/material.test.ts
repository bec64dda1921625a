// Fresh material per key type (services/material.ts): an ecdsa-p256 secret is
// drawn again until it is a valid scalar (1 ≤ d < n); every other type takes the
// first 32 bytes as they come.
import t from 'tap'

import { newMaterial } from '../../../control-plane/src/services/material.js'
import type { CpContext } from '../../../control-plane/src/context.js'
import { nodeSuite } from '../../../protocol/src/index.js'

/** A context whose random source hands out `draws` in turn, keeping what it handed out. */
function drawing(draws: readonly Uint8Array[]): { ctx: CpContext; given: Uint8Array[] } {
  const given: Uint8Array[] = []
  let i = 0
  const randomBytes = (n: number): Uint8Array => {
    const b = draws[i++] as Uint8Array
    if (b.length !== n) throw new Error('unexpected size')
    given.push(b)
    return b
  }
  return { ctx: { suite: { ...nodeSuite, randomBytes } } as unknown as CpContext, given }
}

const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex')

t.test('ecdsa-p256 draws again until the scalar is in 1..n-1', async (t) => {
  const good = new Uint8Array(32).fill(0x11)
  const { ctx } = drawing([new Uint8Array(32), new Uint8Array(n), new Uint8Array(32).fill(0xff), good])
  t.same(newMaterial(ctx, 'ecdsa-p256'), good, 'zero, n and 2^256-1 are refused; the fourth draw is taken')
})

t.test('the other types take the first draw', async (t) => {
  for (const type of ['aead', 'x25519', 'ed25519', 'hmac-sha256'] as const) {
    const { ctx } = drawing([new Uint8Array(32)])
    t.same(newMaterial(ctx, type), new Uint8Array(32), type)
  }
})
