// The audit log over the Store: append inside the caller's transaction, so an
// operation and its audit record commit together or not at all (fail closed),
// and read it back — tail, query, export, verify — in bounded pages.
// The chain itself (hash, MAC, guard, verifier) lives in audit-chain.ts, the
// signed checkpoints in audit-checkpoint.ts.
//
// With the chain key every new entry gets its MAC; startKeyedChain() writes the
// anchor and the bridge entry once (first start with the master key after the
// upgrade, or of a new installation) and signs a checkpoint of it. With a
// signer, a checkpoint is signed in the appending transaction at every multiple
// of `checkpointEvery`, and checkpointIfDue() (the scheduler) signs the head
// when the newest checkpoint is older than its interval.
import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import {
  AuditChainVerifier,
  auditEntryHash,
  auditEntryMac,
  bytesEqual,
  canonicalDetails,
  decodeAuditAnchor,
  encodeAuditAnchor,
  type AuditDetails,
  type AuditVerifyResult,
} from './audit-chain.js'
import { checkpointSignedBy, formatAuditPublicKey, signCheckpoint, type AuditSigner } from './audit-checkpoint.js'
import { cpError } from './errors.js'
import type { AuditCheckpointRecord, AuditHead, AuditOutcome, AuditRow } from './store/records.js'
import type { AuditFilter, Store, StoreReader, StoreTx } from './store/store.js'

export const DEFAULT_AUDIT_PAGE = 500
/** A checkpoint is signed at every multiple of this many entries. */
export const DEFAULT_CHECKPOINT_EVERY = 1000
/** Meta record holding the anchor (audit-chain.ts): where MACs start. */
export const AUDIT_ANCHOR_META = 'audit-chain'
export const CHAIN_START_ACTION = 'audit.chain.start'

export interface AuditInput {
  /** Who: 'operator:<token id>', 'agent:<id>', 'system:<task>'. */
  readonly actor: string
  readonly action: string
  readonly target: string
  readonly outcome: AuditOutcome
  readonly reason: string
  /** Plain JSON, never key material; checked by the guard in audit-chain.ts. */
  readonly details?: AuditDetails
}

/** An entry as shown to operators: details parsed, hashes as hex. */
export type AuditEntry = Omit<AuditRow, 'detailsJson' | 'prevHash' | 'hash' | 'mac'> & {
  readonly details: AuditDetails
  readonly prevHash: string
  readonly hash: string
  readonly mac: string | null
}

export type AuditQuery = Omit<AuditFilter, 'afterSeq' | 'beforeSeq' | 'order' | 'limit'> & { readonly limit?: number }

export interface AuditLogOptions {
  readonly suite?: CryptoSuite
  /** Clock for `at`; injected so tests fix it. */
  readonly now?: () => number
  /** Rows per read transaction when streaming. */
  readonly pageSize?: number
  /** The chain key (auditChainKey of the master key): appended entries get MACs, verify checks them. */
  readonly chainKey?: Uint8Array | undefined
  /** Signs checkpoints; without it none are made. */
  readonly signer?: AuditSigner | undefined
  /** Checks the store's checkpoints; the signer's public key when absent. */
  readonly publicKey?: Uint8Array | undefined
  /** A checkpoint at every multiple of this many entries (default 1000). */
  readonly checkpointEvery?: number
}

export interface AuditVerifyOptions {
  /** Heads trusted from outside the store (a verified checkpoint, --expect-head): the chain must pass through each. */
  readonly expect?: readonly AuditHead[]
  /**
   * Start after this head, verified before by this process: only the entries after
   * it are checked, and the entry at it must still be there with its hash (else
   * `truncated` or `checkpoint-mismatch` at it). An entry before it that was changed
   * since is not seen: a full verification (no `from`) finds that.
   */
  readonly from?: AuditHead
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

export function toAuditEntry(row: AuditRow): AuditEntry {
  const { detailsJson, prevHash, hash, mac, ...fields } = row
  let details: AuditDetails
  try {
    details = JSON.parse(detailsJson) as AuditDetails
  } catch {
    // Only a tampered row gets here; show it rather than hide the rest of the log.
    details = { unparseable: detailsJson }
  }
  // detailsJson is left out: the parsed details say the same, once.
  return { ...fields, details, prevHash: hex(prevHash), hash: hex(hash), mac: mac === null ? null : hex(mac) }
}

export interface AuditLog {
  /** Appends within `tx`; throws CP_ERR_AUDIT (the caller's transaction then rolls back). */
  append(tx: StoreTx, input: AuditInput): Promise<AuditEntry>
  /** The last `n` entries, oldest first. */
  tail(store: Store, n: number): Promise<AuditEntry[]>
  /** Entries matching the filter, oldest first, at most `limit` (default one page). */
  query(store: Store, q?: AuditQuery): Promise<AuditEntry[]>
  /** Every matching entry, oldest first, one page per read transaction. */
  export(store: Store, q?: Omit<AuditQuery, 'limit'>): AsyncGenerator<AuditEntry>
  /**
   * Recomputes the whole chain and compares the end with the stored head; with
   * the chain key checks every MAC from the anchor on, with a public key every
   * stored checkpoint, and the chain must pass through every expected head.
   */
  verify(store: Store, options?: AuditVerifyOptions): Promise<AuditVerifyResult>
  /** The newest stored checkpoint, or null. */
  latestCheckpoint(store: Store): Promise<AuditCheckpointRecord | null>
  /**
   * Signs the head when it moved past the newest checkpoint and that one is at
   * least `intervalMs` old (or there is none); null when nothing was due or there is no signer.
   */
  checkpointIfDue(store: Store, intervalMs: number): Promise<AuditCheckpointRecord | null>
  /**
   * Starts the keyed chain unless it has started: the anchor, the bridge entry
   * (its MAC covers the unkeyed entries before it) and a signed checkpoint of it,
   * all in `tx`. Needs the chain key and the signer; resolves to the bridge entry, or null.
   */
  startKeyedChain(tx: StoreTx): Promise<AuditEntry | null>
  /** The public key checkpoints are checked with, if any. */
  readonly publicKey: Uint8Array | null
}

export function createAuditLog(options: AuditLogOptions = {}): AuditLog {
  const suite = options.suite ?? nodeSuite
  const now = options.now ?? Date.now
  const pageSize = options.pageSize ?? DEFAULT_AUDIT_PAGE
  const { chainKey, signer } = options
  const publicKey = options.publicKey ?? signer?.publicKey ?? null
  const every = Math.max(1, Math.floor(options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY))

  // The newest checkpoint whose signature holds: a row written into the table by
  // someone else (a forged one, one with a far-future seq or time) is neither
  // exported nor allowed to stop the signing of new ones. Only the newest few are
  // looked at: a table filled with forgeries just makes the next checkpoint due.
  const latest = async (r: StoreReader): Promise<AuditCheckpointRecord | null> => {
    const rows = await r.listAuditCheckpoints({ order: 'desc', limit: 16 })
    return rows.find((c) => publicKey === null || checkpointSignedBy(publicKey, c)) ?? null
  }

  const log: AuditLog = {
    publicKey,

    async append(tx, input) {
      const detailsJson = canonicalDetails(input.details ?? {})
      try {
        const head = await tx.lockAuditHead()
        const unhashed = {
          seq: head.seq + 1,
          at: now(),
          actor: input.actor,
          action: input.action,
          target: input.target,
          outcome: input.outcome,
          reason: input.reason,
          detailsJson,
          prevHash: head.hash,
        }
        const hash = auditEntryHash(unhashed, suite)
        const row: AuditRow = { ...unhashed, hash, mac: chainKey ? auditEntryMac(chainKey, unhashed.seq, hash, suite) : null }
        await tx.appendAuditRow(row)
        if (signer && row.seq % every === 0) await tx.insertAuditCheckpoint(signCheckpoint(signer, row, row.at))
        return toAuditEntry(row)
      } catch (e) {
        throw cpError('CP_ERR_AUDIT', undefined, { cause: e })
      }
    },

    async tail(store, n) {
      const rows = await store.read((tx) => tx.listAuditEntries({ order: 'desc', limit: n }))
      return rows.reverse().map(toAuditEntry)
    },

    async query(store, q = {}) {
      const rows = await store.read((tx) => tx.listAuditEntries({ ...q, limit: q.limit ?? pageSize }))
      return rows.map(toAuditEntry)
    },

    async *export(store, q = {}) {
      let afterSeq = 0
      for (;;) {
        const rows = await store.read((tx) => tx.listAuditEntries({ ...q, afterSeq, limit: pageSize }))
        for (const row of rows) yield toAuditEntry(row)
        const last = rows[rows.length - 1]
        if (!last || rows.length < pageSize) return
        afterSeq = last.seq
      }
    },

    async verify(store, o = {}) {
      const anchor = chainKey ? await store.read((tx) => tx.getMeta(AUDIT_ANCHOR_META)) : null
      const keyedFrom = chainKey && anchor ? decodeAuditAnchor(chainKey, anchor, suite) : null
      const from = o.from !== undefined && o.from.seq > 0 ? o.from : undefined
      const v = new AuditChainVerifier({ suite, chainKey, keyedFrom, from })
      if (from) {
        const [at] = await store.read((tx) => tx.listAuditEntries({ afterSeq: from.seq - 1, limit: 1 }))
        if (at?.seq !== from.seq) return (v.fail(from.seq, 'truncated'), v.finish())
        if (!bytesEqual(at.hash, from.hash) || !bytesEqual(auditEntryHash(at, suite), from.hash)) return (v.fail(from.seq, 'checkpoint-mismatch'), v.finish())
      }
      for (const h of o.expect ?? []) v.expect(h)
      // Stored checkpoints whose signature fails: the chain is judged broken there.
      const forged = new Set<number>()
      for (;;) {
        // The last (short) page and the head are read in one snapshot, so an
        // append racing with the verification cannot look like a mismatch.
        const page = await store.read(async (tx) => {
          const rows = await tx.listAuditEntries({ afterSeq: v.lastSeq, limit: pageSize })
          const end = rows.length < pageSize ? undefined : rows[rows.length - 1]?.seq
          const checkpoints = publicKey ? await tx.listAuditCheckpoints({ afterSeq: v.lastSeq, upToSeq: end, limit: pageSize + 1 }) : []
          const head: AuditHead | null = end === undefined ? await tx.getAuditHead() : null
          return { rows, checkpoints, head }
        })
        for (const c of page.checkpoints) {
          if (publicKey && checkpointSignedBy(publicKey, c)) v.expect(c)
          else forged.add(c.seq)
        }
        for (const row of page.rows) {
          if (forged.has(row.seq)) return (v.fail(row.seq, 'checkpoint-signature'), v.finish())
          if (!v.push(row)) return v.finish()
        }
        if (page.head) {
          const beyond = Math.min(...forged)
          if (Number.isFinite(beyond)) v.fail(beyond, 'checkpoint-signature')
          return v.finish(page.head)
        }
      }
    },

    latestCheckpoint: (store) => store.read(latest),

    async checkpointIfDue(store, intervalMs) {
      if (!signer) return null
      const due = (head: AuditHead, last: AuditCheckpointRecord | null): boolean =>
        head.seq > 0 && (last === null || (head.seq > last.seq && now() - last.at >= intervalMs))
      // Looked at first, so an idle control plane does not open a write transaction every pass.
      if (!(await store.read(async (r) => due(await r.getAuditHead(), await latest(r))))) return null
      return store.transaction(async (tx) => {
        const head = await tx.lockAuditHead()
        if (!due(head, await latest(tx))) return null
        const c = signCheckpoint(signer, head, now())
        await tx.insertAuditCheckpoint(c)
        return c
      })
    },

    async startKeyedChain(tx) {
      if (!chainKey || !signer) throw cpError('CP_ERR_AUDIT', 'the keyed chain needs the chain key and the signer')
      // An anchor that does not decode is left alone: verify reports it (unkeyed),
      // and writing a new one would hide that it was tampered with.
      if ((await tx.getMeta(AUDIT_ANCHOR_META)) !== null) return null
      const head = await tx.lockAuditHead()
      await tx.putMeta(AUDIT_ANCHOR_META, encodeAuditAnchor(chainKey, head.seq + 1, suite))
      const entry = await log.append(tx, {
        actor: 'system:bootstrap',
        action: CHAIN_START_ACTION,
        target: 'audit',
        outcome: 'ok',
        reason: head.seq === 0
          ? 'keyed audit chain started'
          : `keyed audit chain started; its MACs cover the ${head.seq} unkeyed entries before it`,
        details: { previousSeq: head.seq, previousHash: hex(head.hash), checkpointSigner: formatAuditPublicKey(signer.publicKey) },
      })
      await tx.insertAuditCheckpoint(signCheckpoint(signer, { seq: entry.seq, hash: Buffer.from(entry.hash, 'hex') }, entry.at))
      return entry
    },
  }
  return log
}
