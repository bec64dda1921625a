// `keymesh drop seal`, the streaming part: a header from the secret's source, then
// the input through a DropSealer to the output, one read at a time. Memory holds
// two input buffers (files.ts), one chunk in the sealer and one batch of sealed
// chunks in flight to the output, whatever the input's size.
//
// Contract: resolves once the output is committed (a file is complete and in
// place); on any failure the sealer is wiped, the output aborted (no OUT file) and
// the error rethrown. The secret is wiped as soon as the sealer holds its chunk key.
import type { AgentApiTarget } from '../agent-api.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import { DropSealer, encodeDropHeader, newDropHeader, withSenderTerm, x25519DropSecret, type DropHeader } from '../../protocol/src/index.js'
import { agentService, newDataKey, senderTerm } from './agent-keys.js'
import type { DropReader, DropWriter } from './files.js'
import type { Progress } from './progress.js'
import { reclaim } from './reclaim.js'
import type { RecipientKey } from './recipient-key.js'

/**
 * Where the drop's secret comes from: the KMS through an agent, or a recipient's
 * public key — offline with a sender name that nothing verifies, or through the
 * sender's agent with the sender's own x25519 key, which authenticates it.
 */
export type SealSource =
  | { readonly mode: 'kms'; readonly api: AgentApiTarget; readonly key: string }
  | { readonly mode: 'x25519'; readonly recipientKey: RecipientKey; readonly sender: string }
  | { readonly mode: 'x25519'; readonly recipientKey: RecipientKey; readonly api: AgentApiTarget; readonly senderKey: Pick<RecipientKey, 'key' | 'version'> }

export interface SealJob {
  readonly suite: CryptoSuite
  readonly source: SealSource
  readonly recipient: string
  readonly reader: DropReader
  readonly writer: DropWriter
  readonly progress: Progress
}

export interface SealResult {
  readonly header: DropHeader
  /** Plaintext bytes sealed. */
  readonly bytes: number
}

/** The header, its bytes and its secret (the caller wipes the secret). */
async function headerFor(job: SealJob): Promise<{ header: DropHeader; headerBytes: Uint8Array; secret: Uint8Array }> {
  const { suite, source, recipient } = job
  if (source.mode === 'kms') {
    const sender = await agentService(source.api)
    const dk = await newDataKey(source.api, source.key, sender, recipient)
    try {
      const header = newDropHeader(suite, {
        mode: 'kms', sender, recipient, key: dk.wrapped.key, keyVersion: dk.wrapped.version, wrappedKey: dk.wrappedKey,
      })
      return { header, headerBytes: encodeDropHeader(header), secret: dk.secret }
    } catch (err) {
      dk.secret.fill(0)
      throw err
    }
  }
  const rk = source.recipientKey
  const authenticated = 'api' in source
  const sender = authenticated ? await agentService(source.api) : source.sender
  const { ephemeralPublic, secret } = x25519DropSecret(suite, rk.publicKey)
  try {
    const header = newDropHeader(suite, {
      mode: 'x25519', sender, recipient, key: rk.key, keyVersion: rk.version, ephemeralPublic,
      ...(authenticated ? { senderKey: source.senderKey.key, senderKeyVersion: source.senderKey.version } : {}),
    })
    const headerBytes = encodeDropHeader(header)
    if (!authenticated) return { header, headerBytes, secret }
    const term = await senderTerm(source.api, headerBytes)
    try {
      return { header, headerBytes, secret: withSenderTerm(secret, term) }
    } finally {
      term.fill(0)
      secret.fill(0)
    }
  } catch (err) {
    secret.fill(0)
    throw err
  }
}

export async function sealDrop(job: SealJob): Promise<SealResult> {
  const { reader, writer, progress } = job
  let sealer: DropSealer | undefined
  try {
    const { header, headerBytes, secret } = await headerFor(job)
    try {
      sealer = new DropSealer(job.suite, header, headerBytes, secret)
    } finally {
      secret.fill(0)
    }
    await writer.write([headerBytes])
    let bytes = 0
    for (let data = await reader.read(); data !== undefined; data = await reader.read()) {
      const out = sealer.push(data)
      bytes += data.length
      if (out.length > 0) await writer.write(out)
      progress.add(data.length)
      reclaim() // the chunks just written are garbage now: see reclaim.ts
    }
    await writer.write(sealer.finish())
    await writer.commit()
    progress.done()
    return { header, bytes }
  } catch (err) {
    sealer?.destroy()
    progress.clear()
    await writer.abort()
    throw err
  } finally {
    await reader.close()
  }
}
