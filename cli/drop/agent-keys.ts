// The drop secrets that come from the KMS, asked of the agent's local API
// (agent/src/kms: POST /v1/datakey, /v1/decrypt, /v1/dropopen, /v1/dropseal). The agent performs
// each as its service over its control session; the control plane checks the
// grant and the sender/recipient named in the context, and audits the call.
//
// Contract: every function resolves with a fresh 32-byte secret that the caller
// wipes, or throws a KeymeshError: the agent's or control plane's own code
// (CP_ERR_FORBIDDEN, CP_ERR_NOT_RECIPIENT, ...), AGENT_ERR_API_UNREACHABLE, or
// AGENT_ERR_DROP_KEY when the answer does not hold what it must. Secrets never
// appear in an error message.
import { requestAgentApi } from '../../agent/src/index.js'
import type { AgentApiTarget } from '../agent-api.js'
import { agentError } from '../../agent/src/index.js'
import { parseKm1, type Km1 } from '../../protocol/src/index.js'
import { dropContext, DROP_SECRET_BYTES, type DropHeader } from '../../protocol/src/index.js'

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** The DROP_SECRET_BYTES bytes of canonical base64 `text`; AGENT_ERR_DROP_KEY naming `field` otherwise. */
function secretOf(text: unknown, field: string): Uint8Array {
  const bytes = typeof text === 'string' && B64.test(text) ? Buffer.from(text, 'base64') : undefined
  if (bytes === undefined || bytes.length !== DROP_SECRET_BYTES) {
    bytes?.fill(0)
    throw agentError('AGENT_ERR_DROP_KEY', `the answer's ${field} is not ${DROP_SECRET_BYTES} bytes of base64`)
  }
  return bytes
}

/** The service the agent at `api` stands beside (the drop's sender). */
export async function agentService(api: AgentApiTarget): Promise<string> {
  const status = await callAgent<{ service?: unknown }>(api, 'GET', '/v1/status')
  if (typeof status.service !== 'string') throw agentError('AGENT_ERR_DROP_KEY', 'the agent status names no service')
  return status.service
}

export interface SealKey {
  /** The plaintext data key; the caller wipes it. */
  readonly secret: Uint8Array
  /** The data key wrapped under key:version, as km1 text (goes into the header). */
  readonly wrappedKey: string
  readonly wrapped: Km1
}

/** A fresh data key under `key` for a drop from `sender` to `recipient` (needs generate-data-key). */
export async function newDataKey(api: AgentApiTarget, key: string, sender: string, recipient: string): Promise<SealKey> {
  const answer = await callAgent<{ ciphertext?: unknown; plaintext?: unknown }>(api, 'POST', '/v1/datakey', {
    key,
    context: dropContext({ sender, recipient }),
  })
  const secret = secretOf(answer.plaintext, 'plaintext')
  let wrapped: Km1
  try {
    wrapped = parseKm1(answer.ciphertext)
    if (wrapped.key !== key) throw new Error('another key')
  } catch {
    secret.fill(0)
    throw agentError('AGENT_ERR_DROP_KEY', `the answer's ciphertext is not a km1 data key under ${key}`)
  }
  return { secret, wrappedKey: answer.ciphertext as string, wrapped }
}

/** The data key of a kms drop: the agent unwraps the header's km1 (needs decrypt; the CP checks the recipient). */
export async function unwrapDataKey(api: AgentApiTarget, header: DropHeader): Promise<Uint8Array> {
  const answer = await callAgent<{ plaintext?: unknown }>(api, 'POST', '/v1/decrypt', {
    ciphertext: header.wrappedKey,
    context: dropContext(header),
  })
  return secretOf(answer.plaintext, 'plaintext')
}

const base64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64')

/**
 * The chunk key of an x25519 drop: the control plane derives it from the header
 * (needs decrypt on the key, and that the agent's service is the header's
 * recipient); no raw X25519 value is ever asked for or returned.
 */
export async function openingKey(api: AgentApiTarget, headerBytes: Uint8Array): Promise<Uint8Array> {
  const answer = await callAgent<{ chunkKey?: unknown }>(api, 'POST', '/v1/dropopen', { header: base64(headerBytes) })
  return secretOf(answer.chunkKey, 'chunkKey')
}

/**
 * The sender term of an x25519 drop whose header names the sender's own x25519 key:
 * the control plane computes it for the header's sender service only (needs
 * encrypt on that key). It authenticates the sender to the recipient.
 */
export async function senderTerm(api: AgentApiTarget, headerBytes: Uint8Array): Promise<Uint8Array> {
  const answer = await callAgent<{ senderTerm?: unknown }>(api, 'POST', '/v1/dropseal', { header: base64(headerBytes) })
  return secretOf(answer.senderTerm, 'senderTerm')
}

/** requestAgentApi with the target's token (needed over TCP) and where it came from. */
function callAgent<T>(api: AgentApiTarget, method: string, path: string, body?: unknown): Promise<T> {
  return requestAgentApi<T>(api, method, path, body, { token: api.token, tokenSource: api.tokenSource })
}
