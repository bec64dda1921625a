// An installation with a row in every table, and what the tests that move one
// between stores (copy.test.ts, backup.test.ts) look at: every row of every
// table, a SQLite store of its own per call, raw SQL behind the store's back.
import { join } from 'node:path'

import { createAuditLog } from '../../../control-plane/src/audit.js'
import { STORE_TABLES } from '../../../control-plane/src/store/copy.js'
import { openSqliteStore, type Migration, type Store, type StoreReader } from '../../../control-plane/src/store/index.js'
import type { SqlQueries } from '../../../control-plane/src/store/sql-queries.js'
import { Database } from '../../../control-plane/src/store/sqlite-driver.js'
import { aeadKey, agent, bytes, joinToken, keyVersion, operatorToken, pairKey } from './fixtures.js'

export interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
}

export type Dump = Record<string, Record<string, unknown>[]>

export const ALL = Number.MAX_SAFE_INTEGER
/** The error `p` rejects with (null when it resolves), to match code and message at once. */
export const refusal = (p: Promise<unknown>): Promise<unknown> => p.then(() => null, (e: unknown) => e)
export const rowsOf = (tx: StoreReader): SqlQueries => tx as unknown as SqlQueries

/** Every row of every copied table, in key order. */
export function dump(store: Store): Promise<Dump> {
  return store.read(async (tx) => {
    const out: Dump = {}
    for (const table of STORE_TABLES) out[table.name] = await rowsOf(tx).exportRows(table.name, table.key, null, ALL)
    return out
  })
}

// t.testdir() empties its directory on every call: take it once per test.
const testdirs = new WeakMap<Tap, { dir: string; n: number }>()

/** A fresh SQLite store in a directory of its own under the test's directory. */
export async function sqlite(t: Tap, migrations?: readonly Migration[]): Promise<{ store: Store; dir: string }> {
  let base = testdirs.get(t)
  if (!base) testdirs.set(t, (base = { dir: t.testdir(), n: 0 }))
  const dir = join(base.dir, `store-${++base.n}`)
  const store = await openSqliteStore({ dir, now: () => 1, ...(migrations ? { migrations } : {}) })
  t.teardown(() => store.close())
  return { store, dir }
}

/** An installation with rows in every table, and `entries` audit entries. */
export async function populate(store: Store, entries = 5): Promise<void> {
  const audit = createAuditLog({ now: () => 9000 })
  await store.transaction(async (tx) => {
    await tx.putMeta('cp-identity', bytes(7, 61))
    await tx.insertKey(aeadKey('orders'))
    await tx.insertKey(pairKey('billing:orders', 'billing', 'orders'))
    for (const v of [1, 2, 3]) await tx.insertKeyVersion(keyVersion('orders', v, v === 1 ? { state: 'destroyed', sealedMaterial: null } : {}))
    await tx.insertKeyVersion(keyVersion('billing:orders', 1))
    await tx.putGrant({ keyName: 'orders', service: 'app', rights: ['decrypt', 'encrypt'] })
    await tx.putGrant({ keyName: 'orders', service: 'ops', rights: ['rotate'] })
    await tx.addIntention({ src: 'orders', dst: 'billing', createdAt: 1500 })
    await tx.insertAgent(agent('agt_1', 'orders'))
    await tx.insertAgent(agent('agt_2', 'billing', { revokedAt: 2500, endpoint: '10.0.0.2:7401' }))
    await tx.insertJoinToken(joinToken('jt_1', 'orders', { usedAt: 3500, usedByAgent: 'agt_1' }))
    await tx.insertJoinToken(joinToken('jt_2', 'billing'))
    await tx.insertOperatorToken(operatorToken('tok_1', { role: 'admin' }))
    for (const seq of [1, 2, 3]) await tx.recordUsageBatch({ agentId: 'agt_1', seq, receivedAt: 4000 + seq })
    await tx.addKeyUsage([{ keyName: 'orders', version: 2, service: 'app', day: 20, uses: 3, lastUsedAt: 4100 }])
    for (let i = 0; i < entries; i++) {
      await audit.append(tx, { actor: 'system:test', action: 'test.entry', target: `n:${i}`, outcome: 'ok', reason: 'ünïcode ✓', details: { i } })
    }
  })
}

/** Raw SQL on a SQLite store file behind the store's back (the triggers stop UPDATE, so they go first). */
export function tamper(dir: string, sql: string): void {
  const db = new Database(join(dir, 'keymesh.db'))
  try {
    db.exec('DROP TRIGGER audit_log_no_update')
    db.exec(sql)
  } finally {
    db.close()
  }
}

/** What an untouched target holds: the audit head row its migration seeded, at seq 0. */
export const EMPTY = { rows: 1, headSeq: 0 }
export async function contents(store: Store): Promise<{ rows: number; headSeq: unknown }> {
  const rows = await dump(store)
  return { rows: Object.values(rows).flat().length, headSeq: rows['audit_head']?.[0]?.['seq'] }
}
