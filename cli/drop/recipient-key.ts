// The recipient-key file of an offline drop: what `keymesh key public NAME -o FILE`
// writes (the same JSON as `keymesh key public NAME --json`):
//
//   { "name": "partner-inbox", "version": 1, "publicKey": "x25519:<43 base64url>" }
//
// The drop header must name the key and version whose private half opens it, so a
// bare `x25519:…` line (the output of `key public` without -o) is refused with a
// hint rather than guessed at. Unknown fields are ignored (room to grow).
import { open } from 'node:fs/promises'

import { agentError } from '../../agent/src/index.js'
import { isKeyName, isKeyVersion, isPublicKeyText, parsePublicKey } from '../../protocol/src/index.js'
import { errnoOf } from './files.js'

export interface RecipientKey {
  readonly key: string
  readonly version: number
  readonly publicKey: Uint8Array
}

/** A public-key file is a few hundred bytes; anything much larger is the wrong file. */
const MAX_FILE_BYTES = 4096

const bad = (path: string, why: string) => agentError('AGENT_ERR_RECIPIENT_KEY', `${path}: ${why}`)

export function parseRecipientKey(text: string, path: string): RecipientKey {
  const trimmed = text.trim()
  if (isPublicKeyText(trimmed)) {
    throw bad(path, 'holds a bare public key without its key name and version; save it with `keymesh key public NAME -o FILE`')
  }
  let o: unknown
  try {
    o = JSON.parse(trimmed)
  } catch {
    throw bad(path, 'is not the JSON that `keymesh key public NAME -o FILE` writes')
  }
  const r = o as { name?: unknown; version?: unknown; publicKey?: unknown } | null
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw bad(path, 'is not a JSON object')
  if (!isKeyName(r.name)) throw bad(path, '"name" is not a key name')
  if (!isKeyVersion(r.version)) throw bad(path, '"version" is not a key version')
  if (!isPublicKeyText(r.publicKey)) throw bad(path, '"publicKey" is not x25519:… public-key text')
  // A copy: parsePublicKey may return a view into Node's shared buffer pool.
  return { key: r.name, version: r.version, publicKey: new Uint8Array(parsePublicKey(r.publicKey)) }
}

export async function readRecipientKey(path: string): Promise<RecipientKey> {
  let raw: Buffer
  try {
    // Read at most one byte past the limit: a wrong path (a disk image) is not read whole.
    const fh = await open(path, 'r')
    try {
      const buf = Buffer.alloc(MAX_FILE_BYTES + 1)
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
      raw = buf.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  } catch (err) {
    throw bad(path, `cannot be read (${errnoOf(err)})`)
  }
  if (raw.length > MAX_FILE_BYTES) throw bad(path, `is larger than ${MAX_FILE_BYTES} bytes; not a public-key file`)
  return parseRecipientKey(raw.toString('utf8'), path)
}
