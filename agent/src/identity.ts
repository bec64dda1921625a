// The agent's local identity and enrollment state, kept in its state directory:
//
//   agent.key        0600  {"v":1,"privateKey":base64,"publicKey":"x25519:..."}; created on
//                          first start, reused after. Damaged → refused, never overwritten
//                          (a new key would be a new agent to the control plane).
//   enrollment.json  0600  {"v":1,agentId,service,cpKey,enrolledAt}; written after the first
//                          welcome, so a restart needs no join token.
//   agent.lock             one agent per state directory (platform/src/dir-lock.ts).
//
// Contract:
//   - openAgentState holds the lock until release(); every error it throws is a
//     KeymeshError (AGENT_ERR_STATE_DIR, AGENT_ERR_IDENTITY, AGENT_ERR_SERVICE_MISMATCH)
//     and leaves the lock released.
//   - Errors name paths and modes, never file contents.
//   - release() drops the lock and wipes the static secret key: call it last, after
//     the control session and tunnels are closed.
import { mkdirSync, readFileSync, statSync, type Stats } from 'node:fs'
import { join } from 'node:path'

import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js'
import { X25519_KEY_BYTES } from '../../protocol/src/index.js'
import { formatPublicKey, isId, isPublicKeyText, isServiceName, AGENT_ID_PREFIX } from '../../protocol/src/index.js'
import { lockDir } from '../../platform/src/index.js'
import { writeFileAtomic } from '../../platform/src/index.js'
import { agentError } from './errors.js'

export const IDENTITY_FILE = 'agent.key'
export const ENROLLMENT_FILE = 'enrollment.json'
export const AGENT_LOCK_FILE = 'agent.lock'

const FORMAT_VERSION = 1
const BASE64 = /^[A-Za-z0-9+/]{43}=$/

export interface Enrollment {
  readonly agentId: string
  readonly service: string
  /** The control plane's public key text (`x25519:...`) the agent enrolled with. */
  readonly cpKey: string
  readonly enrolledAt: number
}

export interface AgentState {
  readonly staticKey: KeyPair
  readonly publicKeyText: string
  /** Undefined until the first welcome; the caller sets it after saveEnrollment. */
  enrollment: Enrollment | undefined
  release(): void
}

export interface OpenAgentStateOptions {
  readonly stateDir: string
  readonly service: string
  /** The pinned control-plane key (32 bytes). */
  readonly cpKey: Uint8Array
  readonly suite: CryptoSuite
}

/**
 * Creates the state dir (0700) if missing, takes the lock, loads or creates the
 * identity (0600) and reads the enrollment. An enrollment for another service or
 * another control-plane key is AGENT_ERR_SERVICE_MISMATCH.
 */
export function openAgentState(o: OpenAgentStateOptions): AgentState {
  try {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 })
  } catch (cause) {
    throw agentError('AGENT_ERR_STATE_DIR', `cannot create ${o.stateDir}`, { cause })
  }
  const lock = lockDir(o.stateDir, {
    file: AGENT_LOCK_FILE,
    owner: 'agent',
    error: (detail, cause) => agentError('AGENT_ERR_STATE_DIR', detail, { cause }),
  })
  let staticKey: KeyPair | undefined
  try {
    staticKey = loadOrCreateIdentity(o.stateDir, o.suite)
    const enrollment = readEnrollment(o.stateDir)
    if (enrollment !== undefined) checkEnrollment(o, enrollment)
    const key = staticKey
    let released = false
    return {
      staticKey: key,
      publicKeyText: formatPublicKey(key.publicKey),
      enrollment,
      release() {
        if (released) return
        released = true
        o.suite.x25519Forget(key.secretKey)
        key.secretKey.fill(0)
        lock.release()
      },
    }
  } catch (e) {
    if (staticKey !== undefined) {
      o.suite.x25519Forget(staticKey.secretKey)
      staticKey.secretKey.fill(0)
    }
    lock.release()
    throw e
  }
}

/** Records the enrollment (atomically, 0600). */
export function saveEnrollment(stateDir: string, e: Enrollment): void {
  const path = join(stateDir, ENROLLMENT_FILE)
  if (!validEnrollment(e)) throw agentError('AGENT_ERR_STATE_DIR', `refusing to write an invalid enrollment to ${path}`)
  const text = JSON.stringify({ v: FORMAT_VERSION, agentId: e.agentId, service: e.service, cpKey: e.cpKey, enrolledAt: e.enrolledAt })
  try {
    writeFileAtomic(path, `${text}\n`, 0o600)
  } catch (cause) {
    throw agentError('AGENT_ERR_STATE_DIR', `cannot write ${path}`, { cause })
  }
}

function loadOrCreateIdentity(dir: string, suite: CryptoSuite): KeyPair {
  const path = join(dir, IDENTITY_FILE)
  let st: Stats
  try {
    st = statSync(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return createIdentity(path, suite)
    throw agentError('AGENT_ERR_IDENTITY', `cannot read ${path}`, { cause: e })
  }
  if (!st.isFile()) throw agentError('AGENT_ERR_IDENTITY', `${path} is not a regular file`)
  const mode = st.mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw agentError(
      'AGENT_ERR_IDENTITY',
      `${path} has mode ${mode.toString(8).padStart(4, '0')}; it must not be accessible by group or others (chmod 600 ${path})`,
    )
  }
  return readIdentity(path, suite)
}

// The lock is held, so no other agent can create the file between the stat and here.
function createIdentity(path: string, suite: CryptoSuite): KeyPair {
  const pair = suite.x25519Generate()
  const secret = Buffer.from(pair.secretKey.buffer, pair.secretKey.byteOffset, pair.secretKey.length)
  const text = Buffer.from(
    `${JSON.stringify({ v: FORMAT_VERSION, privateKey: secret.toString('base64'), publicKey: formatPublicKey(pair.publicKey) })}\n`,
  )
  try {
    writeFileAtomic(path, text, 0o600)
  } catch (cause) {
    pair.secretKey.fill(0)
    throw agentError('AGENT_ERR_STATE_DIR', `cannot write ${path}`, { cause })
  } finally {
    text.fill(0)
  }
  return pair
}

function readIdentity(path: string, suite: CryptoSuite): KeyPair {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (cause) {
    throw agentError('AGENT_ERR_IDENTITY', `cannot read ${path}`, { cause })
  }
  let secret: Uint8Array | undefined
  try {
    let parsed: unknown
    try {
      parsed = JSON.parse(bytes.toString('utf8'))
    } catch {
      // The SyntaxError may quote the file (the key): keep it off the error.
      throw damaged(path, 'not JSON')
    }
    if (typeof parsed !== 'object' || parsed === null) throw damaged(path, 'not a JSON object')
    const p = parsed as Record<string, unknown>
    if (p['v'] !== FORMAT_VERSION) throw damaged(path, `unknown format version (this agent reads version ${FORMAT_VERSION})`)
    const text = p['privateKey']
    if (typeof text !== 'string' || !BASE64.test(text)) throw damaged(path, 'privateKey is not base64 of 32 bytes')
    secret = new Uint8Array(Buffer.from(text, 'base64'))
    if (secret.length !== X25519_KEY_BYTES) throw damaged(path, 'privateKey is not 32 bytes')
    const pair = suite.x25519FromSecret(secret)
    // The public key is stored too, so a flipped bit in the private key is caught
    // here rather than showing up as an unknown agent at the control plane.
    if (p['publicKey'] !== undefined && (!isPublicKeyText(p['publicKey']) || p['publicKey'] !== formatPublicKey(pair.publicKey))) {
      pair.secretKey.fill(0)
      throw damaged(path, 'publicKey does not match privateKey')
    }
    return pair
  } finally {
    secret?.fill(0)
    bytes.fill(0)
  }
}

function damaged(path: string, why: string) {
  return agentError('AGENT_ERR_IDENTITY', `${path}: ${why}; restore it from a backup, or remove it to start as a new agent (which needs a new join token)`)
}

function readEnrollment(dir: string): Enrollment | undefined {
  const path = join(dir, ENROLLMENT_FILE)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw agentError('AGENT_ERR_STATE_DIR', `cannot read ${path}`, { cause: e })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  const p = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>
  const e = { agentId: p['agentId'], service: p['service'], cpKey: p['cpKey'], enrolledAt: p['enrolledAt'] }
  if (p['v'] !== FORMAT_VERSION || !validEnrollment(e)) {
    // Not guessed around: the agent would reconnect with its key anyway, but a
    // damaged state file is worth an operator's look. Removing it is safe.
    throw agentError('AGENT_ERR_STATE_DIR', `${path} is damaged; remove it (the agent reconnects with its identity and writes it again)`)
  }
  return e
}

function validEnrollment(e: { agentId: unknown; service: unknown; cpKey: unknown; enrolledAt: unknown }): e is Enrollment {
  return (
    isId(e.agentId, AGENT_ID_PREFIX) &&
    isServiceName(e.service) &&
    isPublicKeyText(e.cpKey) &&
    typeof e.enrolledAt === 'number' &&
    Number.isSafeInteger(e.enrolledAt) &&
    e.enrolledAt >= 0
  )
}

function checkEnrollment(o: OpenAgentStateOptions, e: Enrollment): void {
  if (e.service !== o.service) {
    throw agentError('AGENT_ERR_SERVICE_MISMATCH', `${o.stateDir} holds agent ${e.agentId} of service ${e.service}, not ${o.service}`)
  }
  const cpKey = formatPublicKey(o.cpKey)
  if (e.cpKey !== cpKey) {
    throw agentError('AGENT_ERR_SERVICE_MISMATCH', `${o.stateDir} holds agent ${e.agentId} enrolled with control plane ${e.cpKey}, not ${cpKey}`)
  }
}
