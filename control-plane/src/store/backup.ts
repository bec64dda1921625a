// Backing up an installation to a file and restoring it into an empty store
// (`keymesh backup create|restore|inspect`, GET /v1/sys/backup). The format and
// its checks are in backup-format.ts; the row access and the table list are
// the ones `keymesh store migrate` copies with (copy.ts).
//
// Contract:
//   - writeBackup reads one snapshot (Store.read): the header's counts and audit
//     head and every row come from the same moment, whatever writes run beside
//     it. It refuses a store whose audit chain is broken (as copyStore does) and
//     hands the file to `sink` one page at a time: memory stays bounded by a page.
//     On SQLite the snapshot holds the store's one connection, so writes wait
//     until it is read; sink to a local file, not to a slow reader.
//   - checkBackupFile reads a file through BackupChecker without any store.
//   - restoreBackup checks the file first (nothing is opened for writing when it
//     fails), then reads it again into one transaction on an empty target of the
//     same schema version; the second read must give the same checksum, or the
//     transaction rolls back. After the commit the target's chain is verified
//     through the store and must end at the header's head (verifyCopy).
import { createReadStream } from 'node:fs'

import { KeymeshError, nodeSuite } from '../../../protocol/src/index.js'
import type { CryptoSuite } from '../../../protocol/src/index.js'
import { AuditChainVerifier } from '../audit-chain.js'
import { cpError } from '../errors.js'
import type { Sealer } from '../seal.js'
import {
  BackupChecker,
  LineSplitter,
  headerLine,
  newChecksum,
  rowLines,
  trailerLine,
  type BackupCheckOptions,
  type BackupSummary,
} from './backup-format.js'
import { DEFAULT_COPY_PAGE, STORE_TABLES, refuseInstallation, rowsOf, schemaVersion, verifyCopy } from './copy.js'
import type { AuditHead } from './records.js'
import { toAuditRow, type Row } from './sql-rows.js'
import type { Store } from './store.js'

export interface WriteBackupOptions {
  /** The header's createdAt. */
  readonly now?: () => number
  /** The control plane's static public key, when the writer knows it. */
  readonly identity?: Uint8Array | undefined
  readonly pageSize?: number
  readonly suite?: CryptoSuite
  /** The installation's sealer: the trailer is sealed with it (backup-format.ts). */
  readonly sealer?: Pick<Sealer, 'seal'> | undefined
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Writes the installation in `store` as a backup file through `sink` (see the file comment). */
export async function writeBackup(store: Store, sink: (chunk: string) => Promise<void>, options: WriteBackupOptions = {}): Promise<BackupSummary> {
  const pageSize = Math.max(1, Math.floor(options.pageSize ?? DEFAULT_COPY_PAGE))
  const suite = options.suite ?? nodeSuite
  return store.read(async (tx) => {
    const q = rowsOf(tx)
    const head = await tx.getAuditHead()
    const tables: Record<string, number> = {}
    for (const t of STORE_TABLES) tables[t.name] = await q.countRows(t.name)
    const header = {
      createdAt: (options.now ?? Date.now)(),
      schemaVersion: await schemaVersion(q),
      identity: options.identity ? hex(options.identity) : null,
      auditHead: { seq: head.seq, hash: hex(head.hash) },
      tables,
    }
    const sum = newChecksum()
    const emit = async (chunk: string): Promise<void> => {
      sum.update(chunk)
      await sink(chunk)
    }
    await emit(headerLine(header))
    const chain = new AuditChainVerifier(suite)
    let rows = 0
    for (const t of STORE_TABLES) {
      let after: unknown[] | null = null
      for (;;) {
        const page: Row[] = await q.exportRows(t.name, t.key, after, pageSize)
        if (t.name === 'audit_log') for (const r of page) chain.push(toAuditRow(r))
        if (page.length > 0) await emit(rowLines(t.name, page))
        rows += page.length
        const last = page[page.length - 1]
        if (last === undefined || page.length < pageSize) break
        after = t.key.map((k) => last[k])
      }
    }
    const v = chain.finish(head)
    if (!v.ok) throw cpError('CP_ERR_STORE', `the store's audit chain is broken at seq ${v.firstBadSeq} (${v.reason}); no backup was made`)
    const digest = sum.digest()
    await sink(trailerLine(rows, digest, options.sealer))
    return {
      header: { format: 'keymesh-backup', version: 1, ...header },
      rows,
      sha256: hex(digest),
      audit: { count: v.count, macs: 'unchecked' },
      seal: options.sealer ? 'verified' : 'absent',
    }
  })
}

/** Feeds the file at `path` to `checker` line by line; `onRow` sees each decoded row. */
async function readInto(path: string, checker: BackupChecker, onRow?: (table: string, row: Row) => Promise<void>): Promise<BackupSummary> {
  const lines = new LineSplitter()
  const stream = createReadStream(path)
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (const line of lines.push(chunk)) {
        const got = checker.push(line)
        if (got !== null && onRow) await onRow(got.table, got.row)
      }
    }
  } catch (e) {
    if (e instanceof KeymeshError) throw e
    throw cpError('CP_ERR_BACKUP_CORRUPT', `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e })
  } finally {
    stream.destroy()
  }
  return checker.finish(lines.end())
}

/** Checks the backup file at `path` without any store: form, counts, checksum, audit chain. */
export async function checkBackupFile(path: string, options: BackupCheckOptions = {}): Promise<BackupSummary> {
  return readInto(path, new BackupChecker(options))
}

export interface RestoreOptions extends BackupCheckOptions {
  /** Rows written per statement round. */
  readonly pageSize?: number
  /** The file's summary from an earlier checkBackupFile, so it is not read a third time. */
  readonly checked?: BackupSummary
}

export interface RestoreResult extends BackupSummary {
  /** The target's chain as verified through the store after the commit. */
  readonly restored: { readonly count: number; readonly head: AuditHead }
}

/** Restores the backup at `path` into the empty `target` (see the file comment). */
export async function restoreBackup(path: string, target: Store, options: RestoreOptions = {}): Promise<RestoreResult> {
  if (target.readOnly) throw cpError('CP_ERR_STORE', 'the target store was opened read-only')
  const checked = options.checked ?? (await checkBackupFile(path, options))
  const pageSize = Math.max(1, Math.floor(options.pageSize ?? DEFAULT_COPY_PAGE))
  await target.transaction(async (tx) => {
    const to = rowsOf(tx)
    const version = await schemaVersion(to)
    if (version !== checked.header.schemaVersion) {
      const fix = checked.header.schemaVersion < version
        ? 'restore it with the keymesh that made it, start a control plane on it once with this keymesh (that migrates it), then back it up again'
        : 'restore it with a newer keymesh'
      throw cpError('CP_ERR_BACKUP_VERSION', `the backup has schema version ${checked.header.schemaVersion} and the target ${version}; ${fix}`)
    }
    await refuseInstallation(to, tx, 'restore')
    await to.clearRows('audit_head')
    let table = ''
    let page: Row[] = []
    const flush = async (): Promise<void> => {
      if (page.length > 0) await to.importRows(table, page)
      page = []
    }
    const again = await readInto(path, new BackupChecker(options), async (t, row) => {
      if (t !== table || page.length >= pageSize) await flush()
      table = t
      page.push(row)
    })
    await flush()
    if (again.sha256 !== checked.sha256) throw cpError('CP_ERR_BACKUP_CORRUPT', 'the file changed while it was being restored')
  })
  const head: AuditHead = { seq: checked.header.auditHead.seq, hash: new Uint8Array(Buffer.from(checked.header.auditHead.hash, 'hex')) }
  const restored = await verifyCopy(target, head, options.suite)
  return { ...checked, restored }
}
