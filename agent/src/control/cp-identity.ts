// The control plane's own word on its key: `GET /v1/identity` on the URL the agent
// dials, over the same TLS trust as the control session (--ca-file, --cp-fingerprint).
//
// Asked only after a handshake failed the way a wrong pinned key fails it (the
// control plane could not read message 1: an unauthenticated PROTO_ERR_DECRYPT), so
// that the agent can say which key it pins and which one the control plane has,
// instead of retrying a network problem that is not one. Over https the answer is as
// trustworthy as the certificate; over plain ws:// anyone on the path could write it,
// which buys them no more than dropping the connection would.
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'

import { parsePublicKey } from '../../../protocol/src/index.js'
import { tlsConnector, type TlsTrust } from '../../../platform/src/index.js'

/** The identity URL for the agent endpoint URL the session dials (ws:// or wss://, any path prefix). */
export function identityUrl(dial: string): URL {
  const url = new URL(dial)
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:'
  url.pathname = url.pathname.replace(/\/v1\/agent$/, '/v1/identity')
  return url
}

/** Longest answer read: the JSON of one key and its fingerprint is ~150 bytes. */
const MAX_ANSWER_BYTES = 4096

/**
 * The control plane's static public key as it states it, or undefined when it does
 * not answer with one in `timeoutMs` (unreachable, sealed, an older version).
 */
export function fetchControlPlaneKey(dial: string, trust: TlsTrust | undefined, timeoutMs: number): Promise<Uint8Array | undefined> {
  const url = identityUrl(dial)
  return new Promise((resolve) => {
    const options = { method: 'GET', headers: { accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) }
    const req = url.protocol === 'https:'
      ? httpsRequest(url, { ...options, createConnection: tlsConnector(trust ?? {}) as never })
      : httpRequest(url, { ...options, agent: false })
    req.once('error', () => resolve(undefined))
    req.once('response', (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
        if (text.length > MAX_ANSWER_BYTES) res.destroy()
      })
      res.once('error', () => resolve(undefined))
      res.once('close', () => {
        if (res.statusCode !== 200 || !res.complete) return resolve(undefined)
        try {
          resolve(new Uint8Array(parsePublicKey((JSON.parse(text) as { publicKey?: unknown }).publicKey as string)))
        } catch {
          resolve(undefined)
        }
      })
    })
    req.end()
  })
}
