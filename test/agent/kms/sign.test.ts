// Signatures and MACs through the agent's data API against a real control plane:
// /v1/sign, /v1/verify, /v1/hmac and /v1/hmac/verify, single and batched, with
// their separate rights (sign, verify, hmac), key types enforced, km1s/km1m text
// naming key and version, old signatures still verifying after rotation and
// refused once their version is disabled, tampering answered valid: false, and
// the public key verifying a signature outside keymesh (node:crypto with the PEM).
import t from 'tap'
import { createPublicKey, verify as nodeVerify } from 'node:crypto'

import { startTestAgent, type TestAgent } from '../../kit/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { createKey } from '../../kit/kms.js'
import { until } from '../../kit/wait.js'

const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64')

async function call(a: TestAgent, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${a.agent.apiUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...a.apiHeaders }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

/** The signature text with one bit of its body flipped (still canonical base64url). */
function tamper(text: string): string {
  const parts = text.split(':')
  const body = Buffer.from(parts[3] as string, 'base64url')
  body[0] = (body[0] as number) ^ 1
  return [...parts.slice(0, 3), body.toString('base64url')].join(':')
}

const h = await startTestControlPlane(t)
await createKey(h, 'release', 'ed25519', { signer: ['sign'], checker: ['verify'] })
await createKey(h, 'tickets', 'ecdsa-p256', { signer: ['sign', 'verify'] })
await createKey(h, 'webhooks', 'hmac-sha256', { signer: ['hmac'], checker: ['verify'] })
await createKey(h, 'records', 'aead', { signer: ['encrypt', 'sign'] })
const signer = await startTestAgent(t, h, { service: 'signer', api: true })
const checker = await startTestAgent(t, h, { service: 'checker', api: true })
await until(() => signer.agent.status().controlPlane.state === 'connected' && checker.agent.status().controlPlane.state === 'connected', 'both agents to connect')

const message = b64('release 1.2.3 sha256:0f2e…')

t.test('ed25519: one service signs, another verifies, neither does the other half', async (t) => {
  const signed = await call(signer, '/v1/sign', { key: 'release', message })
  t.equal(signed.status, 200)
  t.match(signed.body, { signature: /^km1s:release:1:[A-Za-z0-9_-]{86}$/, key: 'release', version: 1 })
  t.same(Object.keys(signed.body), ['signature', 'key', 'version'])

  const checked = await call(checker, '/v1/verify', { signature: signed.body.signature, message })
  t.same([checked.status, checked.body], [200, { valid: true, key: 'release', version: 1 }])
  const other = await call(checker, '/v1/verify', { signature: signed.body.signature, message: b64('release 6.6.6') })
  t.same(other.body, { valid: false, key: 'release', version: 1 }, 'another message is valid: false')
  const tampered = await call(checker, '/v1/verify', { signature: tamper(signed.body.signature), message })
  t.same(tampered.body, { valid: false, key: 'release', version: 1 }, 'a tampered signature is valid: false')

  const checkerSigns = await call(checker, '/v1/sign', { key: 'release', message })
  t.same([checkerSigns.status, checkerSigns.body.error.code], [403, 'CP_ERR_FORBIDDEN'], 'verify does not confer sign')
  const signerVerifies = await call(signer, '/v1/verify', { signature: signed.body.signature, message })
  t.same([signerVerifies.status, signerVerifies.body.error.code], [403, 'CP_ERR_FORBIDDEN'], 'sign does not confer verify')

  // Outside keymesh: the PEM of `key public` and node:crypto alone.
  const pub = await h.api('GET', '/v1/keys/release/public')
  t.match(pub.body.publicKey, /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/)
  const raw = Buffer.from((signed.body.signature as string).split(':')[3] as string, 'base64url')
  t.ok(nodeVerify(null, Buffer.from(message, 'base64'), createPublicKey(pub.body.publicKey), raw), 'the PEM verifies the signature body')
})

t.test('ecdsa-p256: P1363 signatures that verify with the PEM; randomised, so two differ', async (t) => {
  const a = await call(signer, '/v1/sign', { key: 'tickets', message })
  const b = await call(signer, '/v1/sign', { key: 'tickets', message })
  t.match(a.body, { signature: /^km1s:tickets:1:/, key: 'tickets', version: 1 })
  t.not(a.body.signature, b.body.signature, 'ECDSA draws a fresh nonce')
  for (const s of [a, b]) t.same((await call(signer, '/v1/verify', { signature: s.body.signature, message })).body, { valid: true, key: 'tickets', version: 1 })
  t.same((await call(signer, '/v1/verify', { signature: tamper(a.body.signature), message })).body.valid, false)
  const pem = (await h.api('GET', '/v1/keys/tickets/public')).body.publicKey as string
  const raw = Buffer.from((a.body.signature as string).split(':')[3] as string, 'base64url')
  t.ok(nodeVerify('sha256', Buffer.from(message, 'base64'), { key: createPublicKey(pem), dsaEncoding: 'ieee-p1363' }, raw), 'r || s verifies outside keymesh')
})

t.test('hmac-sha256: MAC and verify with separate rights; the full 32-byte tag', async (t) => {
  const mac = await call(signer, '/v1/hmac', { key: 'webhooks', message })
  t.equal(mac.status, 200)
  t.match(mac.body, { mac: /^km1m:webhooks:1:[A-Za-z0-9_-]{43}$/, key: 'webhooks', version: 1 })
  t.same((await call(signer, '/v1/hmac', { key: 'webhooks', message })).body.mac, mac.body.mac, 'deterministic')
  t.same((await call(checker, '/v1/hmac/verify', { mac: mac.body.mac, message })).body, { valid: true, key: 'webhooks', version: 1 })
  t.same((await call(checker, '/v1/hmac/verify', { mac: tamper(mac.body.mac), message })).body, { valid: false, key: 'webhooks', version: 1 })
  t.same((await call(checker, '/v1/hmac/verify', { mac: mac.body.mac, message: b64('other') })).body.valid, false)
  const forged = await call(checker, '/v1/hmac', { key: 'webhooks', message })
  t.same([forged.status, forged.body.error.code], [403, 'CP_ERR_FORBIDDEN'], 'verify does not confer hmac')
  const own = await call(signer, '/v1/hmac/verify', { mac: mac.body.mac, message })
  t.same([own.status, own.body.error.code], [403, 'CP_ERR_FORBIDDEN'], 'hmac does not confer verify')
  const pub = await h.api('GET', '/v1/keys/webhooks/public')
  t.same([pub.status, pub.body.error.code], [409, 'CP_ERR_KEY_TYPE'], 'an hmac key has no public key')
})

t.test('key types: each operation refuses keys of another type, and text of another kind', async (t) => {
  const enc = await call(signer, '/v1/encrypt', { key: 'release', plaintext: message })
  t.same([enc.status, enc.body.error.code], [409, 'CP_ERR_KEY_TYPE'], 'encrypt with an ed25519 key')
  t.match(enc.body.error.message, /needs an aead key/)
  const sign = await call(signer, '/v1/sign', { key: 'records', message })
  t.same([sign.status, sign.body.error.code], [409, 'CP_ERR_KEY_TYPE'], 'sign with an aead key')
  t.match(sign.body.error.message, /needs an ed25519 or ecdsa-p256 key/)
  t.same((await call(signer, '/v1/hmac', { key: 'release', message })).body.error.code, 'CP_ERR_KEY_TYPE', 'hmac with an ed25519 key')
  const mac = (await call(signer, '/v1/hmac', { key: 'webhooks', message })).body.mac as string
  const asSignature = await call(checker, '/v1/verify', { signature: mac, message })
  t.same([asSignature.status, asSignature.body.error.code], [400, 'PROTO_ERR_SIGNATURE_FORMAT'], 'a MAC is not a signature')
  const forged = await call(checker, '/v1/hmac/verify', { mac: `km1m:release:1:${'A'.repeat(43)}`, message })
  t.same(forged.body.error.code, 'CP_ERR_KEY_TYPE', 'km1m text naming an ed25519 key')
  const pem = await h.api('GET', '/v1/keys/records/public')
  t.same(pem.body.error.code, 'CP_ERR_KEY_TYPE', 'an aead key has no public key')
})

t.test('bodies: the routes name their fields; the wire names and bad input are refused by field', async (t) => {
  const wireName = await call(signer, '/v1/sign', { key: 'release', plaintext: message })
  t.same([wireName.status, wireName.body.error.code], [400, 'AGENT_ERR_BAD_REQUEST'])
  t.match(wireName.body.error.message, /plaintext: unknown field for sign/)
  const missing = await call(checker, '/v1/verify', { signature: 'km1s:release:1:AAAA' })
  t.match(missing.body.error.message, /message: missing/, 'errors name the API field')
  const badB64 = await call(signer, '/v1/hmac', { items: [{ key: 'webhooks', message: '***' }] })
  t.equal(badB64.body.items[0].error.code, 'AGENT_ERR_BAD_REQUEST')
  t.match(badB64.body.items[0].error.message, /^request is malformed: items\[0\]\.message:/)
  const big = await call(signer, '/v1/sign', { key: 'release', message: b64(new Uint8Array(32 * 1024 + 1)) })
  t.same([big.status, big.body.error.code], [413, 'AGENT_ERR_TOO_LARGE'])
  const malformed = await call(checker, '/v1/verify', { signature: 'km1s:release:1:AAAA', message })
  t.same([malformed.status, malformed.body.error.code], [400, 'PROTO_ERR_SIGNATURE_FORMAT'], 'a signature of the wrong length')
})

t.test('rotation: new signatures name the new version, old ones still verify until their version is disabled', async (t) => {
  await createKey(h, 'rotating', 'ed25519', { signer: ['sign', 'verify'] })
  await createKey(h, 'rotmac', 'hmac-sha256', { signer: ['hmac', 'verify'] })
  const old = (await call(signer, '/v1/sign', { key: 'rotating', message })).body.signature as string
  const oldMac = (await call(signer, '/v1/hmac', { key: 'rotmac', message })).body.mac as string
  const pemV1 = (await h.api('GET', '/v1/keys/rotating/public')).body.publicKey
  t.equal((await h.api('POST', '/v1/keys/rotating/rotate')).status, 200)
  t.equal((await h.api('POST', '/v1/keys/rotmac/rotate')).status, 200)
  const fresh = await call(signer, '/v1/sign', { key: 'rotating', message })
  t.match(fresh.body, { signature: /^km1s:rotating:2:/, version: 2 })
  t.match((await call(signer, '/v1/hmac', { key: 'rotmac', message })).body, { mac: /^km1m:rotmac:2:/, version: 2 })
  t.same((await call(signer, '/v1/verify', { signature: old, message })).body, { valid: true, key: 'rotating', version: 1 }, 'v1 signature verifies after rotation')
  t.same((await call(signer, '/v1/hmac/verify', { mac: oldMac, message })).body, { valid: true, key: 'rotmac', version: 1 }, 'v1 MAC verifies after rotation')
  t.not((await h.api('GET', '/v1/keys/rotating/public')).body.publicKey, pemV1, 'the primary has a new public key')
  t.equal((await h.api('GET', '/v1/keys/rotating/public?version=1')).body.publicKey, pemV1, 'v1 is still there by version')
  // A v1 signature moved under v2 does not verify there.
  t.same((await call(signer, '/v1/verify', { signature: old.replace(':1:', ':2:'), message })).body, { valid: false, key: 'rotating', version: 2 })

  t.equal((await h.api('POST', '/v1/keys/rotating/versions/1/state', { state: 'decrypt-only' })).status, 200)
  t.same((await call(signer, '/v1/verify', { signature: old, message })).body.valid, true, 'decrypt-only still verifies')
  t.equal((await h.api('POST', '/v1/keys/rotating/versions/1/state', { state: 'disabled' })).status, 200)
  const refused = await call(signer, '/v1/verify', { signature: old, message })
  t.same([refused.status, refused.body.error.code], [409, 'CP_ERR_VERSION_DISABLED'], 'a disabled version verifies nothing')
  t.equal((await h.api('POST', '/v1/keys/rotating/versions/2/state', { state: 'decrypt-only' })).status, 200)
  const noPrimary = await call(signer, '/v1/sign', { key: 'rotating', message })
  t.same(noPrimary.body.error.code, 'CP_ERR_VERSION_DECRYPT_ONLY', 'signing needs an enabled primary')
})

t.test('batches: one answer per item in order, a refused or malformed item fails alone', async (t) => {
  const items = Array.from({ length: 40 }, (_, i) => ({ key: i === 7 ? 'records' : 'release', message: b64(`item ${i}`) }))
  const signed = await call(signer, '/v1/sign', { items })
  t.equal(signed.status, 200)
  t.equal(signed.body.items.length, 40)
  t.same(signed.body.items[7].error.code, 'CP_ERR_KEY_TYPE', 'the aead key fails alone')
  t.ok(signed.body.items.every((r: any, i: number) => i === 7 || (r.ok === true && /^km1s:release:1:/.test(r.signature))))
  const checks = signed.body.items.map((r: any, i: number) => ({ signature: r.signature ?? 'km1s:release:1:AAAA', message: b64(`item ${i === 3 ? 'x' : i}`) }))
  const verified = await call(checker, '/v1/verify', { items: checks })
  t.same(verified.body.items.map((r: any) => (r.ok ? r.valid : r.error.code)), checks.map((_: unknown, i: number) => (i === 7 ? 'PROTO_ERR_SIGNATURE_FORMAT' : i !== 3)))

  const macs = await call(signer, '/v1/hmac', { items: [{ key: 'webhooks', message }, { key: 'webhooks', message: b64('b') }, { key: 'webhooks' }] })
  t.same(macs.body.items.map((r: any) => r.ok), [true, true, false], 'an item without its message fails alone')
  const macChecks = await call(checker, '/v1/hmac/verify', { items: [{ mac: macs.body.items[0].mac, message }, { mac: macs.body.items[1].mac, message }] })
  t.same(macChecks.body.items, [{ ok: true, valid: true, key: 'webhooks', version: 1 }, { ok: true, valid: false, key: 'webhooks', version: 1 }])
})

t.test('every call is audited as kms.<op>, without the message', async (t) => {
  const secretMessage = b64('audit me not 7f3a')
  await call(signer, '/v1/sign', { key: 'release', message: secretMessage })
  await call(checker, '/v1/hmac/verify', { mac: `km1m:webhooks:1:${'A'.repeat(43)}`, message: secretMessage })
  const log = await h.api('GET', '/v1/audit?limit=1000')
  const entries = JSON.stringify(log.body)
  for (const action of ['kms.sign', 'kms.verify', 'kms.hmac', 'kms.hmacverify']) t.match(entries, action, `${action} is audited`)
  t.match(entries, /did not verify/, 'a failed verification says so')
  t.notMatch(entries, secretMessage, 'the message is not in the log')
  t.notMatch(entries, Buffer.from('audit me not 7f3a').toString('hex'))
})
