// What the store contract tests need from a back-end, and the helpers they share.
import type { Test } from 'tap'

import type { Migration, Store, StoreTx } from '../../../control-plane/src/store/index.js'

export type RawRow = Record<string, unknown>

export interface OpenOverrides {
  readonly now?: () => number
  readonly migrations?: readonly Migration[]
  readonly readOnly?: boolean
}

export interface StoreBackend {
  readonly name: string
  /** A fresh, empty place for a store (SQLite: a directory; PostgreSQL: a schema URL); null skips the test. */
  place(t: Test): Promise<string | null>
  open(place: string, over: OpenOverrides): Promise<Store>
  /** The back-end's own migration list (the contract appends to it). */
  readonly migrations: readonly Migration[]
  /** Runs SQL on the store's database behind its back (checks and tampering); numbers come back as numbers. */
  raw(place: string, sql: string): Promise<RawRow[]>
  /** What a write slipped into a read-only store's reader fails with. */
  readonly readOnlyWrite: RegExp
}

/** Opens the store at `place` (clock fixed at 42), closed when the test ends. */
export async function openAt(t: Test, b: StoreBackend, place: string, over: OpenOverrides = {}): Promise<Store> {
  const s = await b.open(place, { now: () => 42, ...over })
  t.teardown(() => s.close())
  return s
}

/** A store in a fresh place, or null when the back-end is unavailable (the test is then skipped). */
export async function fresh(t: Test, b: StoreBackend, over: OpenOverrides = {}): Promise<Store | null> {
  const place = await b.place(t)
  return place === null ? null : openAt(t, b, place, over)
}

export const write = <T>(s: Store, fn: (tx: StoreTx) => Promise<T>): Promise<T> => s.transaction(fn)

export const rejectsCode = (t: Test, p: Promise<unknown>, code: string, message?: RegExp) =>
  t.rejects(p, message ? { code, message } : { code })
