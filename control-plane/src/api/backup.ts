// Admin API for backups (admin role only; policy.ts decides):
//   GET /v1/sys/backup → the installation as a backup file (store/backup-format.ts),
//       application/x-ndjson, taken from one read snapshot while writes go on.
// The snapshot is written to a private temporary file first and sent from
// there, so a slow download never holds the store's snapshot open (on SQLite
// that would stall every write). The file is opened for reading and unlinked
// before the answer starts: nothing is left on disk whether the download ends,
// is abandoned, or never starts (the space is freed when the handle closes).
// Every backup is audited after the snapshot, with its audit head, row count
// and checksum, so the log says who took which file away.
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { CpContext } from '../context.js'
import type { Route } from '../http/router.js'
import { perform } from '../operation.js'
import type { BackupSummary } from '../store/backup-format.js'
import { writeBackup } from '../store/backup.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

interface Spooled {
  readonly summary: BackupSummary
  /** The snapshot, open for reading; its file is already unlinked. */
  readonly handle: FileHandle
}

/** The snapshot in a file of its own (mode 0600, in a 0700 directory) that is gone from disk once this resolves or rejects. */
async function spool(ctx: CpContext, parent: string): Promise<Spooled> {
  const dir = await mkdtemp(join(parent, 'keymesh-backup-'))
  const file = join(dir, 'backup.jsonl')
  try {
    const fh = await open(file, 'wx+', 0o600)
    try {
      const summary = await writeBackup(ctx.store, async (chunk) => void (await fh.write(chunk)), {
        now: () => ctx.clock.now(),
        identity: ctx.identity.publicKey,
        suite: ctx.suite,
        sealer: ctx.sealer,
      })
      return { summary, handle: fh }
    } catch (e) {
      await fh.close()
      throw e
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function* send(s: Spooled): AsyncGenerator<string> {
  try {
    for await (const chunk of s.handle.createReadStream({ encoding: 'utf8', start: 0, autoClose: false })) yield chunk as string
  } finally {
    await s.handle.close()
  }
}

/** `spoolDir`: where snapshots wait to be sent (default the OS temporary directory). */
export function backupRoutes(ctx: CpContext, spoolDir: string = tmpdir()): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'GET',
      path: '/v1/sys/backup',
      operation: 'backup.create',
      auth: 'token',
      handler: async (req) => {
        let spooled: Spooled | undefined
        let failure: unknown
        try {
          spooled = await spool(ctx, spoolDir)
        } catch (e) {
          failure = e
        }
        const s = await perform(ctx, {
          actor: operatorActor(req.principal),
          action: 'backup.create',
          target: 'store',
          run: async () => {
            if (spooled === undefined) throw failure
            const { header, rows, sha256 } = spooled.summary
            return { result: spooled, reason: `backed up ${rows} rows at audit seq ${header.auditHead.seq}`, details: { rows, auditSeq: header.auditHead.seq, sha256 } }
          },
        }).catch(async (e: unknown) => {
          await spooled?.handle.close()
          throw e
        })
        return {
          status: 200,
          headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': 'attachment; filename="keymesh-backup.jsonl"' },
          stream: send(s),
        }
      },
    }),
  ]
}
