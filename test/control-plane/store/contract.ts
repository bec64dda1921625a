// The store contract as tests, run against every back-end: sqlite-store.test.ts
// and pg-store.test.ts each call `storeContract` with a StoreBackend, then add
// the tests only their back-end can have (files, locks between processes, …).
import type { Test } from 'tap'

import type { StoreBackend } from './contract-support.js'
import { recordContract } from './contract-records.js'
import { transactionContract } from './contract-transactions.js'

export type { OpenOverrides, RawRow, StoreBackend } from './contract-support.js'
export { fresh, openAt, rejectsCode, write } from './contract-support.js'

export function storeContract(t: Test, backend: StoreBackend): void {
  recordContract(t, backend)
  transactionContract(t, backend)
}
