// The agent's identity and enrollment state in its state directory: created once
// (0600) and reused, damaged or lax files refused without being replaced, an
// enrollment for another service or control plane refused, one agent per directory.
import t from 'tap'
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import {
  AGENT_LOCK_FILE,
  ENROLLMENT_FILE,
  IDENTITY_FILE,
  openAgentState,
  saveEnrollment,
  type Enrollment,
} from '../../agent/src/identity.js'
import { nodeSuite } from '../../protocol/src/index.js'
import { formatPublicKey } from '../../protocol/src/index.js'
import { codeOf } from '../kit/errors.js'

const suite = nodeSuite
const cpKey = suite.x25519Generate().publicKey
const AGENT_ID = 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa'

function open(stateDir: string, service = 'orders', key: Uint8Array = cpKey) {
  return openAgentState({ stateDir, service, cpKey: key, suite })
}

function enrollment(service = 'orders', key: Uint8Array = cpKey): Enrollment {
  return { agentId: AGENT_ID, service, cpKey: formatPublicKey(key), enrolledAt: 1_700_000_000_000 }
}

t.test('creates the identity 0600 in a new 0700 state dir on first start and reuses it after', async (t) => {
  const dir = join(t.testdir(), 'state')
  const first = open(dir)
  t.equal(statSync(dir).mode & 0o777, 0o700, 'state dir is 0700')
  const path = join(dir, IDENTITY_FILE)
  t.equal(statSync(path).mode & 0o777, 0o600, 'identity file is 0600')
  t.equal(first.enrollment, undefined, 'not enrolled yet')
  t.equal(first.publicKeyText, formatPublicKey(first.staticKey.publicKey))
  const publicKey = Buffer.from(first.staticKey.publicKey)
  const secret = Buffer.from(first.staticKey.secretKey)
  const text = readFileSync(path, 'utf8')
  t.match(JSON.parse(text), { v: 1, privateKey: secret.toString('base64'), publicKey: first.publicKeyText })
  first.release()
  t.ok(first.staticKey.secretKey.every((b) => b === 0), 'release wipes the secret key')
  t.notOk(existsSync(join(dir, AGENT_LOCK_FILE)), 'release drops the lock')

  const second = open(dir)
  t.teardown(() => second.release())
  t.same(Buffer.from(second.staticKey.publicKey), publicKey, 'the same key on the next start')
  t.same(Buffer.from(second.staticKey.secretKey), secret)
  t.equal(readFileSync(path, 'utf8'), text, 'the file is not rewritten')
})

t.test('refuses a damaged identity file and never overwrites it', async (t) => {
  const damaged = [
    'not json at all',
    '{"v":2,"privateKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}',
    '{"v":1,"privateKey":"c2hvcnQ="}',
    '[]',
  ]
  for (const text of damaged) {
    const dir = t.testdir()
    const path = join(dir, IDENTITY_FILE)
    writeFileSync(path, text, { mode: 0o600 })
    t.equal(codeOf(() => open(dir)), 'AGENT_ERR_IDENTITY', text)
    t.equal(readFileSync(path, 'utf8'), text, 'left as it was')
    t.notOk(existsSync(join(dir, AGENT_LOCK_FILE)), 'the lock is released after a failed open')
  }
})

t.test('refuses an identity whose public key does not match its private key', async (t) => {
  const dir = t.testdir()
  const a = open(dir)
  const text = JSON.parse(readFileSync(join(dir, IDENTITY_FILE), 'utf8'))
  a.release()
  text.publicKey = formatPublicKey(suite.x25519Generate().publicKey)
  writeFileSync(join(dir, IDENTITY_FILE), JSON.stringify(text), { mode: 0o600 })
  let message = ''
  try {
    open(dir)
  } catch (e) {
    message = (e as Error).message
  }
  t.match(message, /publicKey does not match/)
  t.notOk(message.includes(text.privateKey), 'the error does not quote the key')
})

t.test('refuses an identity file readable by group or others, naming chmod 600', async (t) => {
  const dir = t.testdir()
  open(dir).release()
  const path = join(dir, IDENTITY_FILE)
  for (const mode of [0o640, 0o604, 0o660]) {
    chmodSync(path, mode)
    let err: unknown
    try {
      open(dir)
    } catch (e) {
      err = e
    }
    t.match(err, { code: 'AGENT_ERR_IDENTITY', message: new RegExp(`mode 0${mode.toString(8)}.*chmod 600`) }, mode.toString(8))
  }
  chmodSync(path, 0o400)
  const ok = open(dir)
  t.ok(ok.staticKey.publicKey.length === 32, 'a read-only 0400 file is fine')
  ok.release()
})

t.test('a second opener of the same state dir is refused while the first holds it', async (t) => {
  const dir = t.testdir()
  const first = open(dir)
  let err: unknown
  try {
    open(dir)
  } catch (e) {
    err = e
  }
  t.match(err, { code: 'AGENT_ERR_STATE_DIR', message: /in use by another agent/ })
  first.release()
  const again = open(dir)
  t.ok(again, 'opens once the first released it')
  again.release()
})

t.test('an enrollment is saved 0600, read back, and refused for another service or control plane', async (t) => {
  const dir = t.testdir()
  open(dir).release()
  saveEnrollment(dir, enrollment())
  t.equal(statSync(join(dir, ENROLLMENT_FILE)).mode & 0o777, 0o600)
  const again = open(dir)
  t.same(again.enrollment, enrollment(), 'a restart finds the enrollment')
  again.release()

  t.equal(codeOf(() => open(dir, 'billing')), 'AGENT_ERR_SERVICE_MISMATCH', 'another service')
  const otherCp = suite.x25519Generate().publicKey
  t.equal(codeOf(() => open(dir, 'orders', otherCp)), 'AGENT_ERR_SERVICE_MISMATCH', 'another control plane')
  t.notOk(existsSync(join(dir, AGENT_LOCK_FILE)), 'refusals leave the lock free')
})

t.test('a damaged enrollment file is refused, and an invalid one is never written', async (t) => {
  const dir = t.testdir()
  open(dir).release()
  writeFileSync(join(dir, ENROLLMENT_FILE), '{"v":1,"agentId":"nope"}')
  t.equal(codeOf(() => open(dir)), 'AGENT_ERR_STATE_DIR')
  t.equal(codeOf(() => saveEnrollment(dir, { ...enrollment(), agentId: 'nope' })), 'AGENT_ERR_STATE_DIR')
  t.equal(codeOf(() => saveEnrollment(dir, { ...enrollment(), enrolledAt: -1 })), 'AGENT_ERR_STATE_DIR')
})

t.test('a state dir that cannot be created is AGENT_ERR_STATE_DIR', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'a-file')
  writeFileSync(file, 'x')
  t.equal(codeOf(() => open(join(file, 'state'))), 'AGENT_ERR_STATE_DIR')
})
