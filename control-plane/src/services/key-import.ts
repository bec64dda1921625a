// Bring your own key: `keymesh key import-params NAME` makes a one-time X25519
// wrapping key bound to NAME and the type, sealed in the store (meta
// `key-import:<id>`, under the master key) and valid for IMPORT_PARAMS_TTL_MS
// (24 h); `keymesh key import` sends material wrapped to its public
// half (protocol/src/key-import.ts: the x25519 drop construction reused as-is), and
// the control plane unwraps it, checks its length and stores it as a new version —
// version 1 of a new aead key or the next version (made primary) of an existing
// one — marked `origin: imported`. The wrapping key is deleted in the same
// transaction, so a blob is accepted once: a replay finds no import id.
//
// Plaintext material never travels and never reaches a log, an error or an audit
// entry; what is unwrapped is sealed and wiped at once. A refused import leaves its
// wrapping key in place until it expires (the transaction that would delete it is
// rolled back); expired wrapping keys are refused, and removed when used.
import { formatPublicKey, isKeyName, unwrapKeyImport } from '../../../protocol/src/index.js'
import { DAY } from '../../../platform/src/index.js'
import type { Actor, CpContext } from '../context.js'
import { cpError } from '../errors.js'
import * as lifecycle from '../key-lifecycle.js'
import { perform } from '../operation.js'
import { sealIdentity } from '../seal.js'
import type { KeyType } from '../store/records.js'
import type { StoreTx } from '../store/store.js'
import { keyView, type KeyView } from './keys.js'
import { MATERIAL_BYTES } from './material.js'

export const IMPORT_PARAMS_TTL_MS = DAY
const IMPORTABLE: readonly KeyType[] = ['aead']
const IMPORT_ID = /^import-[0-9a-f]{32}$/
const metaKey = (importId: string): string => `key-import:${importId}`

export interface ImportParams {
  readonly importId: string
  readonly name: string
  readonly type: KeyType
  /** The one-time wrapping key's public half, as `formatPublicKey` writes it. */
  readonly publicKey: string
  readonly expiresAt: number
}

interface Sealed {
  readonly name: string
  readonly type: KeyType
  readonly expiresAt: number
}

function checkTarget(name: string, type: string): void {
  if (!isKeyName(name)) throw cpError('CP_ERR_KEY_NAME', 'key name must be 1-63 of a-z, 0-9, ".", "_" and "-", starting with a letter or digit (no ":")')
  if (!IMPORTABLE.includes(type as KeyType)) throw cpError('CP_ERR_KEY_TYPE', `only ${IMPORTABLE.join(', ')} keys may be imported`)
}

async function checkExisting(tx: StoreTx, name: string, type: KeyType): Promise<void> {
  const key = await tx.getKey(name)
  if (key !== null && key.type !== type) throw cpError('CP_ERR_KEY_TYPE', `${name} is an ${key.type} key, not ${type}`)
}

/** Makes the one-time wrapping key of an import into NAME. */
export function createImportParams(ctx: CpContext, actor: Actor, input: { name: string; type: string }): Promise<ImportParams> {
  return perform(ctx, {
    actor,
    action: 'key.import-params',
    target: isKeyName(input.name) ? `key:${input.name}` : 'key:(invalid name)',
    run: async (tx) => {
      checkTarget(input.name, input.type)
      const type = input.type as KeyType
      await checkExisting(tx, input.name, type)
      const importId = `import-${Buffer.from(ctx.suite.randomBytes(16)).toString('hex')}`
      const expiresAt = ctx.clock.now() + IMPORT_PARAMS_TTL_MS
      const pair = ctx.suite.x25519Generate()
      const sealed: Sealed = { name: input.name, type, expiresAt }
      const plain = new Uint8Array(32 + 512)
      try {
        plain.set(pair.secretKey, 0)
        const n = new TextEncoder().encodeInto(JSON.stringify(sealed), plain.subarray(32)).written
        await tx.putMeta(metaKey(importId), ctx.sealer.seal(sealIdentity.meta(metaKey(importId)), plain.subarray(0, 32 + n)))
      } finally {
        ctx.suite.x25519Forget(pair.secretKey)
        pair.secretKey.fill(0)
        plain.fill(0)
      }
      return {
        result: { importId, name: input.name, type, publicKey: formatPublicKey(pair.publicKey), expiresAt },
        reason: `wrapping key for an import into ${input.name}, valid until ${new Date(expiresAt).toISOString()}`,
        details: { importId, keyName: input.name, keyType: type, expiresAt },
      }
    },
  })
}

/**
 * Unwraps material sent for an import, stores it as a new version marked imported,
 * and deletes the wrapping key. Every refusal is CP_ERR_KEY_IMPORT (or a name/type
 * error) and names no material.
 */
export function importKey(
  ctx: CpContext,
  actor: Actor,
  input: { name: string; type: string; importId: string; wrapped: Uint8Array },
): Promise<KeyView> {
  return perform(ctx, {
    actor,
    action: 'key.import',
    target: isKeyName(input.name) ? `key:${input.name}` : 'key:(invalid name)',
    run: async (tx) => {
      checkTarget(input.name, input.type)
      const type = input.type as KeyType
      const { name, importId } = input
      if (!IMPORT_ID.test(importId)) throw cpError('CP_ERR_KEY_IMPORT', 'import id must be import-<32 hex digits>, as keymesh key import-params printed it')
      const stored = await tx.getMeta(metaKey(importId))
      if (stored === null) throw cpError('CP_ERR_KEY_IMPORT', `unknown or already used import id ${importId}; run keymesh key import-params ${name} again`)
      const plain = ctx.sealer.unseal(sealIdentity.meta(metaKey(importId)), stored)
      const now = ctx.clock.now()
      let material: Uint8Array | undefined
      try {
        const bound = JSON.parse(Buffer.from(plain.subarray(32)).toString('utf8')) as Sealed
        if (bound.name !== name || bound.type !== type) {
          throw cpError('CP_ERR_KEY_IMPORT', `import id ${importId} is for the ${bound.type} key ${bound.name}, not ${type} ${name}`)
        }
        if (bound.expiresAt <= now) throw cpError('CP_ERR_KEY_IMPORT', `import id ${importId} expired at ${new Date(bound.expiresAt).toISOString()}; run keymesh key import-params ${name} again`)
        try {
          material = unwrapKeyImport(ctx.suite, { importId, secretKey: plain.subarray(0, 32), wrapped: input.wrapped })
        } catch {
          throw cpError('CP_ERR_KEY_IMPORT', `the wrapped key does not open with the wrapping key of ${importId}; wrap it to that import's public key`)
        }
        if (material.length !== MATERIAL_BYTES) {
          throw cpError('CP_ERR_KEY_IMPORT', `${type} key material must be ${MATERIAL_BYTES} bytes, not ${material.length}`)
        }
        await checkExisting(tx, name, type)
        const version = await storeImported(ctx, tx, name, type, material, now)
        await tx.deleteMeta(metaKey(importId))
        return {
          result: keyView((await tx.getKey(name))!, await tx.listKeyVersions({ keyName: name })),
          reason: `imported ${type} key material as v${version}`,
          details: { keyName: name, keyType: type, keyVersion: version, importId, origin: 'imported' },
        }
      } finally {
        plain.fill(0)
        material?.fill(0)
      }
    },
  })
}

/** Version 1 of a new key (no scheduled rotation), or the next version made primary. */
async function storeImported(ctx: CpContext, tx: StoreTx, name: string, type: KeyType, material: Uint8Array, now: number): Promise<number> {
  const key = await tx.getKey(name)
  if (key === null) {
    const made = lifecycle.createKey({ name, type, rotationPeriodMs: null }, now, ctx.settings.lifecycle)
    await tx.insertKey({ ...made.key, pairServices: null })
    await tx.insertKeyVersion({ ...made.version, origin: 'imported', sealedMaterial: ctx.sealer.seal(sealIdentity.keyVersion(name, 1), material) })
    return 1
  }
  const primary = await tx.getKeyVersion(name, key.primaryVersion)
  if (primary === null) throw cpError('CP_ERR_KEY_VERSION_NOT_FOUND', `${name} v${key.primaryVersion}`)
  const r = lifecycle.rotate(key, primary, now, { policy: ctx.settings.lifecycle })
  await tx.updateKey(name, { primaryVersion: r.key.primaryVersion, nextRotationAt: r.key.nextRotationAt })
  const v = r.created.version
  await tx.insertKeyVersion({ ...r.created, origin: 'imported', sealedMaterial: ctx.sealer.seal(sealIdentity.keyVersion(name, v), material) })
  return v
}
