// km1s / km1m text (protocol/src/signature.ts): a round trip, one spelling per
// value, the other kind and every malformed part refused with its own code.
import t from 'tap'

import { formatKeyTag, parseKeyTag } from '../../protocol/src/index.js'
import { codeOf } from '../kit/errors.js'

const sig = new Uint8Array(64).fill(7)
const mac = new Uint8Array(32).fill(9)

t.test('round trip of both kinds', async (t) => {
  const s = formatKeyTag({ kind: 'signature', key: 'release', version: 12, bytes: sig })
  t.equal(s, `km1s:release:12:${Buffer.from(sig).toString('base64url')}`)
  t.same(parseKeyTag('signature', s), { kind: 'signature', key: 'release', version: 12, bytes: sig })
  const m = formatKeyTag({ kind: 'mac', key: 'hooks', version: 1, bytes: mac })
  t.match(m, /^km1m:hooks:1:[A-Za-z0-9_-]{43}$/)
  t.same(parseKeyTag('mac', m).bytes, mac)
})

t.test('malformed text is PROTO_ERR_SIGNATURE_FORMAT, never echoed', async (t) => {
  const body = Buffer.from(sig).toString('base64url')
  const bad: Record<string, unknown> = {
    'not a string': 42,
    'too long': `km1s:k:1:${'A'.repeat(50_000)}`,
    'a MAC as a signature': `km1m:k:1:${body}`,
    'a ciphertext': `km1:k:1:${body}`,
    'five parts': `km1s:k:1:${body}:x`,
    'bad key name': `km1s:K Y:1:${body}`,
    'leading zero': `km1s:k:01:${body}`,
    'version 0': `km1s:k:0:${body}`,
    'padding': `km1s:k:1:${Buffer.from(sig).toString('base64')}`,
    'short': `km1s:k:1:${body.slice(0, 80)}`,
    'empty body': 'km1s:k:1:',
  }
  for (const [what, text] of Object.entries(bad)) {
    t.equal(codeOf(() => parseKeyTag('signature', text)), 'PROTO_ERR_SIGNATURE_FORMAT', what)
  }
  try {
    parseKeyTag('signature', `km1s:k:1:${body}x`)
  } catch (e) {
    t.notMatch((e as Error).message, body, 'the message does not repeat the text')
  }
})

t.test('formatting checks its fields', async (t) => {
  t.equal(codeOf(() => formatKeyTag({ kind: 'signature', key: 'bad name', version: 1, bytes: sig })), 'PROTO_ERR_INVALID_NAME')
  t.equal(codeOf(() => formatKeyTag({ kind: 'signature', key: 'k', version: 0, bytes: sig })), 'PROTO_ERR_INVALID_NAME')
  t.equal(codeOf(() => formatKeyTag({ kind: 'mac', key: 'k', version: 1, bytes: sig })), 'PROTO_ERR_INVALID_ARGUMENT', 'a MAC is 32 bytes')
})
