// The control plane's keys in memory, sealed or unsealed (custody/record.ts says
// what the keys are). Sealed: the store key is not in memory; the admin API answers
// only probes, seal-status and unseal (app.ts), agents are refused. Unsealed: the
// store key is held for rekeying, and what it opens (bootstrap.ts's unlockStore)
// serves.
//
// Unseal (custody "shares"): shares are the credential, as in Vault, so the route
// takes no token; it is bounded per source by the stranger limits (api/custody.ts).
// Progress is in memory only (custody/shares.ts). A combination that does not unwrap
// the store key is CP_ERR_UNSEAL_SHARES, with no hint of which share was wrong, and
// progress starts over. Failures cannot be audited while sealed (the audit chain is
// keyed from the store key): each is logged, and they are audited as one summary
// entry at the next unseal.
//
// Seal (admin): audited, then agent sessions are cut and every key in memory zeroed.
// Rekey (admin, unsealed): a new master key, new shares, the store key re-wrapped in
// one row; nothing else changes, so no replica stops (each keeps its store key in
// memory and unseals with the new shares next time). Every replica re-reads the
// custody row when it unseals.
import type { Logger } from 'pino'

import type { CryptoSuite } from '../../../protocol/src/index.js'
import type { Clock, MonotonicClock } from '../../../platform/src/index.js'
import type { AuditLog } from '../audit.js'
import { cpError } from '../errors.js'
import { MASTER_KEY_BYTES } from '../seal.js'
import type { Store } from '../store/store.js'
import { describeCustody, readCustody, unwrapStoreKey, wrapStoreKey, writeCustody, type CustodyRecord } from './record.js'
import { checkShareCounts, combineShares, parseShare, splitMasterKey, UnsealProgress, type UnsealStatus } from './shares.js'

export interface KeyringOptions {
  readonly store: Store
  readonly suite: CryptoSuite
  readonly clock: Clock & MonotonicClock
  readonly logger: Logger
  /** Opens what the store key opens and starts serving; throws when the key is wrong. */
  unlock(storeKey: Uint8Array): Promise<AuditLog>
  /** Stops serving keyed requests and zeroes what unlock made. */
  lock(): Promise<void>
  readonly unsealTimeoutMs?: number
}

export interface SealStatus {
  readonly sealed: boolean
  readonly kind: string | null
  readonly installation: string | null
  readonly shares?: number
  readonly threshold?: number
  readonly progress?: UnsealStatus
}

const MAX_FAILED_SOURCES = 10

export class Keyring {
  #custody: CustodyRecord | null = null
  #storeKey: Uint8Array | null = null
  #audit: AuditLog | null = null
  #progress: UnsealProgress | null = null
  #failures = { count: 0, sources: new Set<string>() }
  // Unseal, seal and rekey one at a time.
  #queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly o: KeyringOptions) {}

  get sealed(): boolean {
    return this.#storeKey === null
  }

  /** At start: sealed with `custody`, or unsealed with `storeKey` (custody/provider.ts). */
  async start(custody: CustodyRecord | null, storeKey: Uint8Array | null): Promise<void> {
    this.#custody = custody
    if (storeKey) await this.#open(storeKey)
  }

  status(): SealStatus {
    const c = this.#custody ? describeCustody(this.#custody) : null
    return {
      sealed: this.sealed,
      kind: c?.kind ?? null,
      installation: c?.installation ?? null,
      ...(c?.shares !== undefined ? { shares: c.shares, threshold: c.threshold } : {}),
      ...(this.sealed && this.#progress ? { progress: this.#progress.status() } : {}),
    }
  }

  /** Adds one share; unseals once `threshold` distinct shares combine to the right key. */
  unseal(shareText: string, source: string): Promise<SealStatus> {
    return this.#serial(async () => {
      if (!this.sealed) return this.status()
      const custody = await this.o.store.read((r) => readCustody(r))
      if (custody?.kind !== 'shares') throw cpError('CP_ERR_CONFLICT', 'this installation is not unsealed with shares')
      // Another replica may have rekeyed since: shares count toward the custody of now.
      let progress = this.#progress
      if (!progress || this.#custody?.wrapped !== custody.wrapped || progress.threshold !== custody.threshold) {
        progress?.reset()
        progress = this.#progress = new UnsealProgress(custody.threshold as number, this.o.clock, this.o.unsealTimeoutMs)
      }
      this.#custody = custody
      const shares = progress.add(parseShare(shareText, custody.installation))
      if (!shares) return this.status()
      const master = await combineShares(shares)
      for (const s of shares) s.fill(0)
      const storeKey = master.length === MASTER_KEY_BYTES ? unwrapStoreKey(this.o.suite, custody, master) : null
      master.fill(0)
      if (!storeKey) {
        this.#failures.count++
        if (this.#failures.sources.size < MAX_FAILED_SOURCES) this.#failures.sources.add(source)
        this.o.logger.warn({ source, failures: this.#failures.count }, 'unseal failed: the shares given do not combine to this store\'s master key; progress starts over')
        throw cpError('CP_ERR_UNSEAL_SHARES')
      }
      await this.#open(storeKey)
      this.o.logger.info({ installation: custody.installation }, 'unsealed')
      return this.status()
    })
  }

  /** Forgets the shares given so far. */
  reset(): SealStatus {
    this.#progress?.reset()
    return this.status()
  }

  seal(actor: string): Promise<SealStatus> {
    return this.#serial(async () => {
      if (this.sealed) return this.status()
      if (this.#custody?.kind !== 'shares') {
        throw cpError('CP_ERR_CONFLICT', `this installation's master key comes from ${this.#custody?.kind === 'pkcs11' ? 'an HSM' : 'a key file'} at start, with no shares to unseal it again: rekey to shares first (keymesh rekey)`)
      }
      await this.o.store.transaction((tx) =>
        (this.#audit as AuditLog).append(tx, { actor, action: 'custody.seal', target: 'control-plane', outcome: 'ok', reason: 'sealed: keys zeroed in memory' }),
      )
      await this.#close()
      this.o.logger.warn('sealed: keys zeroed in memory; keymesh unseal to serve again')
      return this.status()
    })
  }

  /** A new master key split into `shares`; the store key re-wrapped under it. Returns the share texts (shown once). */
  rekey(actor: string, shares: number, threshold: number): Promise<{ shares: string[]; status: SealStatus }> {
    return this.#serial(async () => {
      checkShareCounts(shares, threshold)
      if (this.sealed) throw cpError('CP_ERR_SEALED')
      const installation = (this.#custody as CustodyRecord).installation
      const master = this.o.suite.randomBytes(MASTER_KEY_BYTES)
      try {
        const texts = await splitMasterKey(master, installation, shares, threshold)
        const record = wrapStoreKey(this.o.suite, master, this.#storeKey as Uint8Array, { kind: 'shares', installation, shares, threshold })
        const from = this.#custody?.kind ?? 'none'
        await this.o.store.transaction(async (tx) => {
          await writeCustody(tx, record)
          await (this.#audit as AuditLog).append(tx, {
            actor, action: 'custody.rekey', target: 'control-plane', outcome: 'ok',
            reason: 'new master key split into shares; store key re-wrapped',
            details: { from, kind: 'shares', shares, threshold },
          })
        })
        this.#custody = record
        this.#progress?.reset()
        this.#progress = null
        this.o.logger.info({ shares, threshold }, 'rekeyed: new shares made, store key re-wrapped')
        return { shares: texts, status: this.status() }
      } finally {
        master.fill(0)
      }
    })
  }

  /** On close: zero everything, whatever the state. */
  async close(): Promise<void> {
    await this.#serial(async () => {
      this.#progress?.reset()
      if (!this.sealed) await this.#close()
    })
  }

  async #open(storeKey: Uint8Array): Promise<void> {
    try {
      this.#audit = await this.o.unlock(storeKey)
    } catch (e) {
      storeKey.fill(0)
      throw e
    }
    this.#storeKey = storeKey
    const { count, sources } = this.#failures
    if (count > 0) {
      await this.o.store.transaction((tx) =>
        (this.#audit as AuditLog).append(tx, {
          actor: 'system:custody', action: 'custody.unseal', target: 'control-plane', outcome: 'error',
          reason: `${count} failed unseal attempt${count === 1 ? '' : 's'} while sealed`,
          details: { failures: count, sources: [...sources] },
        }),
      )
      this.#failures = { count: 0, sources: new Set() }
    }
    if (this.#custody?.kind === 'shares') {
      await this.o.store.transaction((tx) =>
        (this.#audit as AuditLog).append(tx, { actor: 'system:custody', action: 'custody.unseal', target: 'control-plane', outcome: 'ok', reason: 'unsealed with shares' }),
      )
    }
  }

  async #close(): Promise<void> {
    await this.o.lock()
    this.#audit = null
    this.#storeKey?.fill(0)
    this.#storeKey = null
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn)
    this.#queue = next.catch(() => undefined)
    return next
  }
}
