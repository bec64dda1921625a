// Copying a whole installation from one store to another (`keymesh store
// migrate`, e.g. SQLite to PostgreSQL): every table, row for row, from one read
// snapshot of the source into one write transaction on the target. Sealed key
// material is copied as bytes and never opened, so no master key is needed
// here; the control planes on the target must use the source's master key.
//
// Contract:
//   - STORE_TABLES is the one list of what an installation holds (everything but
//     schema_migrations, which each store keeps for itself). A test compares it
//     with the tables the migrations create, so a new table cannot be forgotten.
//   - Both stores must be at the same schema version, and the target must hold
//     no installation; otherwise nothing is written.
//   - The audit rows are verified as they stream past and must end at the head
//     read in the same snapshot; a broken chain names its first bad seq. Any
//     failure rolls the target's transaction back: it is left as it was.
//   - After the commit, the target's chain is verified again through the store
//     (audit.ts), and its head must equal the source's.
import { nodeSuite } from '../../../protocol/src/index.js'
import type { CryptoSuite } from '../../../protocol/src/index.js'
import { createAuditLog } from '../audit.js'
import { AuditChainVerifier, bytesEqual, type AuditVerifyResult } from '../audit-chain.js'
import { cpError } from '../errors.js'
import type { AuditHead } from './records.js'
import { SqlQueries } from './sql-queries.js'
import { toAuditRow, type Row } from './sql-rows.js'
import type { Store, StoreReader } from './store.js'

export interface StoreTable {
  readonly name: string
  /** The primary key: the order rows are read in, and where the next page starts. */
  readonly key: readonly string[]
}

/** Every table of an installation, parents before the tables that refer to them. */
export const STORE_TABLES: readonly StoreTable[] = [
  { name: 'meta', key: ['key'] },
  { name: 'keys', key: ['name'] },
  { name: 'key_versions', key: ['key_name', 'version'] },
  { name: 'grants', key: ['key_name', 'service', 'grant_right'] },
  { name: 'intentions', key: ['src', 'dst'] },
  { name: 'agents', key: ['id'] },
  { name: 'join_tokens', key: ['id'] },
  { name: 'operator_tokens', key: ['id'] },
  { name: 'usage_batches', key: ['agent_id', 'seq'] },
  { name: 'key_usage', key: ['key_name', 'version', 'service', 'day'] },
  { name: 'audit_log', key: ['seq'] },
  { name: 'audit_checkpoints', key: ['seq'] },
  // Seeded by the first migration (seq 0); the copy replaces that row.
  { name: 'audit_head', key: ['id'] },
  // The elapsed time observed (elapsed-ledger.ts): the guards of pending deadlines are readings of it.
  { name: 'elapsed_ledger', key: ['id'] },
  // The operator console's (ui/): sessions expire within the hour, replicas' rows are rewritten by the living.
  { name: 'console_sessions', key: ['id'] },
  { name: 'console_replicas', key: ['id'] },
  { name: 'agent_tunnels', key: ['agent_id', 'pair_id'] },
]

/** Kept by each store for itself, never copied. */
export const SCHEMA_TABLE = 'schema_migrations'

export const DEFAULT_COPY_PAGE = 1000

export interface CopyOptions {
  /** Rows read (and written) per statement round; tests make it small to cross pages. */
  readonly pageSize?: number
  readonly suite?: CryptoSuite
}

export interface CopyResult {
  readonly schemaVersion: number
  /** Rows copied per table, in STORE_TABLES order. */
  readonly rows: Readonly<Record<string, number>>
  /** The target's chain as verified after the commit; its head is the source's. */
  readonly audit: { readonly count: number; readonly head: AuditHead }
}

/** The row access of a SQL back-end's transaction; every Store here has one. */
export function rowsOf(tx: StoreReader): SqlQueries {
  if (tx instanceof SqlQueries) return tx
  throw cpError('CP_ERR_STORE', 'this store back-end cannot be copied')
}

/** The highest applied migration of the store `q` belongs to. */
export async function schemaVersion(q: SqlQueries): Promise<number> {
  const rows = await q.exportRows(SCHEMA_TABLE, ['version'], null, Number.MAX_SAFE_INTEGER)
  return rows.reduce((m, r) => Math.max(m, Number(r.version)), 0)
}

function refuseVersions(source: number, target: number): void {
  if (source === target) return
  const fix = source < target
    ? 'start its control plane once with this keymesh (that migrates it), stop it, then copy'
    : 'run a newer keymesh'
  throw cpError('CP_ERR_STORE', `the source has schema version ${source} and the target ${target}; ${fix}`)
}

/** Refuses a target that holds any installation data: a copy (or a restore) never merges. */
export async function refuseInstallation(q: SqlQueries, tx: StoreReader, what = 'copy'): Promise<void> {
  const held: string[] = []
  for (const t of STORE_TABLES) {
    if (t.name === 'audit_head') continue
    if ((await q.exportRows(t.name, t.key, null, 1)).length > 0) held.push(t.name)
  }
  if ((await tx.getAuditHead()).seq !== 0) held.push('audit_head')
  if (held.length > 0) {
    throw cpError('CP_ERR_STORE_NOT_EMPTY', `the target already holds an installation (rows in ${held.join(', ')}); ${what} into an empty database or schema`)
  }
}

function refuseBroken(v: AuditVerifyResult): void {
  if (!v.ok) throw cpError('CP_ERR_STORE', `the source's audit chain is broken at seq ${v.firstBadSeq} (${v.reason}); nothing was copied`)
}

/**
 * Copies the installation in `source` into the empty `target` (see the file
 * comment), then verifies the target's audit chain. `source` may be read-only
 * and in use: rows committed after its snapshot are not copied.
 */
export async function copyStore(source: Store, target: Store, options: CopyOptions = {}): Promise<CopyResult> {
  if (target.readOnly) throw cpError('CP_ERR_STORE', 'the target store was opened read-only')
  const pageSize = Math.max(1, Math.floor(options.pageSize ?? DEFAULT_COPY_PAGE))
  const suite = options.suite ?? nodeSuite
  const copied = await source.read(async (src) => {
    const from = rowsOf(src)
    const version = await schemaVersion(from)
    const head = await src.getAuditHead()
    return target.transaction(async (dst) => {
      const to = rowsOf(dst)
      refuseVersions(version, await schemaVersion(to))
      await refuseInstallation(to, dst)
      const chain = new AuditChainVerifier(suite)
      const rows: Record<string, number> = {}
      for (const t of STORE_TABLES) {
        if (t.name === 'audit_head') await to.clearRows(t.name)
        let count = 0
        let after: unknown[] | null = null
        for (;;) {
          const page: Row[] = await from.exportRows(t.name, t.key, after, pageSize)
          if (t.name === 'audit_log') {
            for (const r of page) if (!chain.push(toAuditRow(r))) refuseBroken(chain.finish())
          }
          count += await to.importRows(t.name, page)
          const last = page[page.length - 1]
          if (last === undefined || page.length < pageSize) break
          after = t.key.map((k) => last[k])
        }
        rows[t.name] = count
      }
      refuseBroken(chain.finish(head))
      return { version, rows, head }
    })
  })
  const audit = await verifyCopy(target, copied.head, suite)
  return { schemaVersion: copied.version, rows: copied.rows, audit }
}

/**
 * Verifies the audit chain of `target` through the store and that it ends at
 * `expected` (the source's head); CP_ERR_STORE otherwise, naming what differs.
 */
export async function verifyCopy(target: Store, expected: AuditHead, suite: CryptoSuite = nodeSuite): Promise<{ count: number; head: AuditHead }> {
  const v = await createAuditLog({ suite }).verify(target)
  if (!v.ok) {
    throw cpError('CP_ERR_STORE', `the target's audit chain does not verify at seq ${v.firstBadSeq} (${v.reason}); empty the target and copy again`)
  }
  if (v.head.seq !== expected.seq || !bytesEqual(v.head.hash, expected.hash)) {
    throw cpError('CP_ERR_STORE', `the target's audit head (seq ${v.head.seq}) is not the source's (seq ${expected.seq}); empty the target and copy again`)
  }
  return { count: v.count, head: v.head }
}
