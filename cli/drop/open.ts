// `keymesh drop open`, the streaming part: read the header, get the secret from
// the KMS through the agent (kms: unwrap the data key; x25519: key agreement),
// then the rest of the input through a DropOpener to the output.
//
// Contract: only verified plaintext is written, and a file output becomes OUT
// only after the final chunk verified (files.ts commits after finish()). On any
// failure — a bad header, a refused KMS call, an altered, reordered, duplicated,
// truncated or extended chunk — the opener is wiped, the output aborted (no OUT
// file) and the error rethrown. Memory is constant: the header (bounded by
// MAX_DROP_HEADER_BYTES), two input buffers and one sealed chunk in the opener.
import { agentError } from '../../agent/src/index.js'
import type { AgentApiTarget } from '../agent-api.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import { decodeDropHeader, DropOpener, dropSenderAuthenticated, MAX_DROP_HEADER_BYTES, type DropHeader } from '../../protocol/src/index.js'
import { protoError } from '../../protocol/src/index.js'
import { openingKey, unwrapDataKey } from './agent-keys.js'
import type { DropReader, DropWriter } from './files.js'
import type { Progress } from './progress.js'
import { reclaim } from './reclaim.js'

export interface OpenJob {
  readonly suite: CryptoSuite
  readonly api: AgentApiTarget
  readonly reader: DropReader
  readonly writer: DropWriter
  readonly progress: Progress
  /** Refuse, before any key is asked for or any byte written, a drop whose sender is not verified. */
  readonly requireVerifiedSender?: boolean
}

export interface OpenResult {
  readonly header: DropHeader
  /** Plaintext bytes written. */
  readonly bytes: number
  /**
   * True when the cryptography proves the sender: a kms drop (the control plane
   * checked the sealer against the data key's context) or an x25519 drop with a
   * sender key. Otherwise the header's sender is only a name the sealer wrote.
   */
  readonly senderVerified: boolean
}

/** Reads until the header decodes; returns it, its exact bytes and the payload bytes read past it. */
async function readHeader(reader: DropReader, progress: Progress): Promise<{ header: DropHeader; headerBytes: Uint8Array; rest: Uint8Array }> {
  let acc: Uint8Array = new Uint8Array(0)
  for (;;) {
    const data = await reader.read()
    if (data === undefined) {
      throw acc.length === 0
        ? protoError('PROTO_ERR_DROP_FORMAT', 'the input is empty, not a keymesh drop')
        : protoError('PROTO_ERR_DROP_TRUNCATED', 'the input ends inside the drop header')
    }
    progress.add(data.length)
    // A copy each time: the reader reuses its buffers. Bounded: decodeDropHeader
    // fails or succeeds within MAX_DROP_HEADER_BYTES.
    acc = Buffer.concat([acc, data])
    const decoded = decodeDropHeader(acc)
    if (decoded !== undefined) {
      return { header: decoded.header, headerBytes: acc.slice(0, decoded.length), rest: acc.subarray(decoded.length) }
    }
    if (acc.length > MAX_DROP_HEADER_BYTES) throw protoError('PROTO_ERR_DROP_FORMAT', `no complete header in the first ${MAX_DROP_HEADER_BYTES} bytes`)
  }
}

export async function openDrop(job: OpenJob): Promise<OpenResult> {
  const { reader, writer, progress } = job
  let opener: DropOpener | undefined
  try {
    const { header, headerBytes, rest } = await readHeader(reader, progress)
    if (job.requireVerifiedSender === true && !dropSenderAuthenticated(header)) {
      throw agentError('AGENT_ERR_SENDER_NOT_VERIFIED', header.sender === '' ? 'the drop names no sender' : `the drop names ${header.sender} as its sender without proving it`)
    }
    // A kms drop's data key is unwrapped by the KMS; an x25519 drop's chunk key is
    // derived by the control plane from the header itself.
    const secret = header.mode === 'kms' ? await unwrapDataKey(job.api, header) : await openingKey(job.api, headerBytes)
    try {
      opener = new DropOpener(job.suite, header, headerBytes, header.mode === 'kms' ? secret : { chunkKey: secret })
    } finally {
      secret.fill(0)
    }
    let bytes = 0
    const put = async (plain: Uint8Array[]): Promise<void> => {
      if (plain.length === 0) return
      for (const p of plain) bytes += p.length
      await writer.write(plain)
    }
    await put(opener.push(rest))
    for (let data = await reader.read(); data !== undefined; data = await reader.read()) {
      await put(opener.push(data))
      progress.add(data.length)
      reclaim() // the chunks just written are garbage now: see reclaim.ts
    }
    await put(opener.finish())
    await writer.commit()
    progress.done()
    return { header, bytes, senderVerified: dropSenderAuthenticated(header) }
  } catch (err) {
    opener?.destroy()
    progress.clear()
    await writer.abort()
    throw err
  } finally {
    await reader.close()
  }
}
