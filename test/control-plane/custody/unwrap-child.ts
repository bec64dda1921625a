// A second process that unwraps a PKCS#11-wrapped master key, as a control plane
// restarting unattended would: it has the config and the blob's file, nothing else.
//   node unwrap-child.js CONFIG_JSON BLOB_FILE [SEALED_FILE IDENTITY]
// Prints one JSON line: { keySha256, record? } — the SHA-256 of the unwrapped key
// (never the key) and, given a record sealed under the master key, its plaintext
// as UTF-8 — or { code, message } when the unwrap fails. Exits 0 either way.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

import { isKeymeshError } from '../../../protocol/src/index.js'
import { pkcs11Config, pkcs11Unwrap } from '../../../control-plane/src/custody/pkcs11.js'
import { unseal } from '../../../control-plane/src/seal.js'

const [config, blobFile, sealedFile, identity] = process.argv.slice(2)
try {
  const key = await pkcs11Unwrap(pkcs11Config(JSON.parse(config as string)), new Uint8Array(readFileSync(blobFile as string)))
  const out: Record<string, string> = { keySha256: createHash('sha256').update(key).digest('hex') }
  if (sealedFile !== undefined) out.record = Buffer.from(unseal(key, identity as string, new Uint8Array(readFileSync(sealedFile)))).toString('utf8')
  key.fill(0)
  process.stdout.write(`${JSON.stringify(out)}\n`)
} catch (e) {
  process.stdout.write(`${JSON.stringify(isKeymeshError(e) ? { code: e.code, message: e.message } : { code: 'untyped', message: String(e) })}\n`)
}
