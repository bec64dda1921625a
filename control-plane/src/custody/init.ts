// `keymesh control-plane init`: chooses an installation's custody before its first
// start, offline, on the data directory (locked meanwhile) and its store.
//   --shares N --threshold K  a random master key split into shares (custody/shares.ts),
//                             returned once for the CLI to print or write; the control
//                             plane then starts sealed;
//   --key-file F              the master key in F (made when absent), outside the data
//                             directory; every start reads it (--master-key-file F);
//   --pkcs11-module …         a random master key wrapped by an AES key in an HSM
//                             (custody/pkcs11.ts); every start unwraps it unattended.
// On an empty store a random store key is made. A store from before key custody
// (its material sealed directly under DIR/master.key) needs --from-key-file with that
// key: it is checked against the store and becomes the store key; a file in the data
// directory is then removed, since it would open the store on its own.
// The custody row and a pending audit event (custody/provider.ts) are written in one
// transaction; the audit entry is written at the first unseal.
import { existsSync, unlinkSync } from 'node:fs'
import { dirname, relative, resolve, isAbsolute } from 'node:path'
import type { Logger } from 'pino'

import { nodeSuite, type CryptoSuite } from '../../../protocol/src/index.js'
import { systemClock } from '../../../platform/src/index.js'
import { IDENTITY_META, openInstallation } from '../bootstrap.js'
import { cpError } from '../errors.js'
import { createMasterKeyFile, readMasterKeyFile } from '../master-key.js'
import { createSealer, MASTER_KEY_BYTES, sealIdentity } from '../seal.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import { WRONG_MASTER_KEY, writeCustodyEvent } from './provider.js'
import { CUSTODY_META, newInstallationId, readCustody, wrapStoreKey } from './record.js'
import { checkShareCounts, splitMasterKey } from './shares.js'
import { pkcs11Config, pkcs11CreateKey, pkcs11Wrap, type Pkcs11Config } from './pkcs11.js'

export interface InitOptions {
  readonly dataDir: string
  readonly storeUrl?: string | undefined
  readonly shares?: number | undefined
  readonly threshold?: number | undefined
  readonly keyFile?: string | undefined
  readonly fromKeyFile?: string | undefined
  /** The HSM that wraps the master key (custody/pkcs11.ts); `createKey` makes its AES key first. */
  readonly pkcs11?: (Pkcs11Config & { readonly createKey?: boolean }) | undefined
  readonly logger: Logger
  readonly suite?: CryptoSuite
}

export interface InitResult {
  readonly installation: string
  readonly kind: 'shares' | 'file' | 'pkcs11'
  /** The share texts (kind shares): shown once. */
  readonly shares?: string[]
  readonly keyFile?: string
  /** True when the key file was made now. */
  readonly created?: boolean
  /** The old key's file, when the installation moved from before custody. */
  readonly migratedFrom?: string
  /** True when that file was in the data directory and is now removed. */
  readonly removed?: boolean
}

/** True when `path` is `dir` or inside it. */
export function isInside(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path))
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}

export async function initCustody(o: InitOptions): Promise<InitResult> {
  const suite = o.suite ?? nodeSuite
  if ([o.shares, o.keyFile, o.pkcs11].filter((x) => x !== undefined).length !== 1) {
    throw cpError('CP_ERR_USAGE', 'give one of --shares N --threshold K (production), --pkcs11-module … (an HSM unseals at start) or --key-file FILE (development)')
  }
  const hsm = o.pkcs11 ? pkcs11Config(o.pkcs11) : undefined
  if (o.shares !== undefined) checkShareCounts(o.shares, o.threshold ?? NaN)
  if (o.keyFile !== undefined && isInside(o.keyFile, o.dataDir)) throw cpError('CP_ERR_USAGE', `--key-file ${o.keyFile} is inside the data directory; the master key must be kept apart from it`)
  const opened = await openInstallation({ dataDir: o.dataDir, storeUrl: o.storeUrl, suite, clock: systemClock, logger: o.logger })
  const { store } = opened
  try {
    const found = await store.read(async (r) => ({ custody: await readCustody(r), identity: await r.getMeta(IDENTITY_META) }))
    if (found.custody) throw cpError('CP_ERR_CONFLICT', `this installation is initialised already (custody: ${found.custody.kind}); new shares: keymesh rekey`)
    let storeKey: Uint8Array
    if (found.identity) {
      if (o.fromKeyFile === undefined) throw cpError('CP_ERR_USAGE', 'this store was made before key custody: give its key with --from-key-file (e.g. DATA_DIR/master.key)')
      storeKey = readMasterKeyFile(o.fromKeyFile)
      const check = createSealer(storeKey, suite)
      try {
        check.unseal(sealIdentity.meta(IDENTITY_META), found.identity).fill(0)
      } catch (e) {
        storeKey.fill(0)
        if (isKeymeshError(e) && e.code === 'CP_ERR_UNSEAL') throw cpError('CP_ERR_MASTER_KEY', `${o.fromKeyFile}: ${WRONG_MASTER_KEY}`)
        throw e
      } finally {
        check.wipe()
      }
    } else {
      if (o.fromKeyFile !== undefined) throw cpError('CP_ERR_USAGE', '--from-key-file is for a store made before key custody; this one is new')
      storeKey = suite.randomBytes(MASTER_KEY_BYTES)
    }
    const installation = newInstallationId(suite)
    let master: Uint8Array
    let created = false
    if (o.keyFile !== undefined && existsSync(o.keyFile)) master = readMasterKeyFile(o.keyFile)
    else if (o.keyFile !== undefined) {
      master = createMasterKeyFile(o.keyFile, dirname(o.keyFile), suite.randomBytes) ?? readMasterKeyFile(o.keyFile)
      created = true
    } else master = suite.randomBytes(MASTER_KEY_BYTES)
    const kind = o.shares !== undefined ? 'shares' : hsm ? 'pkcs11' : 'file'
    const counts: Record<string, number> = o.shares !== undefined ? { shares: o.shares, threshold: o.threshold as number } : {}
    try {
      const shares = kind === 'shares' ? await splitMasterKey(master, installation, o.shares as number, o.threshold as number) : undefined
      if (hsm && o.pkcs11?.createKey) await pkcs11CreateKey(hsm)
      const pkcs11 = hsm ? { config: hsm, blob: Buffer.from(await pkcs11Wrap(hsm, master, suite.randomBytes)).toString('base64') } : undefined
      const record = wrapStoreKey(suite, master, storeKey, {
        kind, installation,
        ...(o.shares !== undefined ? { shares: o.shares, threshold: o.threshold as number } : {}),
        ...(pkcs11 ? { pkcs11 } : {}),
      })
      await store.transaction(async (tx) => {
        if (!(await tx.insertMetaIfAbsent(CUSTODY_META, new TextEncoder().encode(JSON.stringify(record))))) {
          throw cpError('CP_ERR_CONFLICT', 'this installation was initialised meanwhile')
        }
        await writeCustodyEvent(tx, {
          action: found.identity ? 'custody.migrate' : 'custody.init',
          reason: `control-plane init: ${kind === 'shares' ? `${o.shares} shares, threshold ${o.threshold}` : kind === 'pkcs11' ? 'master key wrapped by an HSM key' : 'key file'}`,
          details: { kind, installation, ...counts, ...(hsm ? { module: hsm.module, keyLabel: hsm.keyLabel } : {}), ...(o.keyFile !== undefined ? { path: resolve(o.keyFile) } : {}), ...(o.fromKeyFile !== undefined ? { from: resolve(o.fromKeyFile) } : {}) },
        })
      })
      const removed = o.fromKeyFile !== undefined && isInside(o.fromKeyFile, o.dataDir)
      if (removed) unlinkSync(o.fromKeyFile as string)
      return {
        installation,
        kind,
        ...(shares ? { shares } : {}),
        ...(o.keyFile !== undefined ? { keyFile: o.keyFile, created } : {}),
        ...(o.fromKeyFile !== undefined ? { migratedFrom: o.fromKeyFile, removed } : {}),
      }
    } finally {
      master.fill(0)
      storeKey.fill(0)
    }
  } finally {
    await store.close()
    opened.lock.release()
  }
}
