// `keymesh control-plane init`: chooses an installation's custody before its first
// start, offline, on the data directory (locked meanwhile) and its store.
//   --shares N --threshold K  a random master key split into shares (custody/shares.ts),
//                             returned once for the CLI to print or write; the control
//                             plane then starts sealed;
//   --key-file F              the master key in F (made when absent), outside the data
//                             directory; every start reads it (--master-key-file F).
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

export interface InitOptions {
  readonly dataDir: string
  readonly storeUrl?: string | undefined
  readonly shares?: number | undefined
  readonly threshold?: number | undefined
  readonly keyFile?: string | undefined
  readonly fromKeyFile?: string | undefined
  readonly logger: Logger
  readonly suite?: CryptoSuite
}

export interface InitResult {
  readonly installation: string
  readonly kind: 'shares' | 'file'
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
  if ((o.shares === undefined) === (o.keyFile === undefined)) throw cpError('CP_ERR_USAGE', 'give --shares N --threshold K (production) or --key-file FILE (development)')
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
      try {
        createSealer(storeKey, suite).unseal(sealIdentity.meta(IDENTITY_META), found.identity).fill(0)
      } catch (e) {
        storeKey.fill(0)
        if (isKeymeshError(e) && e.code === 'CP_ERR_UNSEAL') throw cpError('CP_ERR_MASTER_KEY', `${o.fromKeyFile}: ${WRONG_MASTER_KEY}`)
        throw e
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
    const kind = o.shares !== undefined ? 'shares' : 'file'
    const counts: Record<string, number> = o.shares !== undefined ? { shares: o.shares, threshold: o.threshold as number } : {}
    try {
      const shares = kind === 'shares' ? await splitMasterKey(master, installation, o.shares as number, o.threshold as number) : undefined
      const record = wrapStoreKey(suite, master, storeKey, { kind, installation, ...(o.shares !== undefined ? { shares: o.shares, threshold: o.threshold as number } : {}) })
      await store.transaction(async (tx) => {
        if (!(await tx.insertMetaIfAbsent(CUSTODY_META, new TextEncoder().encode(JSON.stringify(record))))) {
          throw cpError('CP_ERR_CONFLICT', 'this installation was initialised meanwhile')
        }
        await writeCustodyEvent(tx, {
          action: found.identity ? 'custody.migrate' : 'custody.init',
          reason: `control-plane init: ${kind === 'shares' ? `${o.shares} shares, threshold ${o.threshold}` : 'key file'}`,
          details: { kind, installation, ...counts, ...(o.keyFile !== undefined ? { path: resolve(o.keyFile) } : {}), ...(o.fromKeyFile !== undefined ? { from: resolve(o.fromKeyFile) } : {}) },
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
