// `keymesh backup create|restore|inspect`: the installation as one file, key
// material still sealed under the master key (control-plane/src/store/backup*.ts).
//   - create: through the control plane (GET /v1/sys/backup, admin token), or
//     offline from a store (--data-dir DIR | --store URL, opened read-only).
//     The file appears whole or not at all: it is written beside -o FILE, its
//     lines are checked as they arrive (checksum, counts, audit chain), and
//     only a complete, intact file is fsync'd and linked into place (mode 0600).
//   - restore: into an empty store (created or migrated first), in one
//     transaction, after the file has been checked; then the target's audit
//     chain is verified through the store. With --master-key-file the file's
//     seal is opened and the audit MACs are checked too: a file altered and
//     checksummed again is refused, and the key is proved the installation's.
//   - inspect: the header, the counts and the checks, without any store.
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'

import type { Argv, CommandModule } from 'yargs'

import { BackupChecker, LineSplitter, type BackupSummary } from '../../control-plane/src/index.js'
import { checkBackupFile, restoreBackup, writeBackup } from '../../control-plane/src/index.js'
import { CUSTODY_META, STORE_TABLES, auditChainKey, cpError, createSealer, custodyOf, openStore, parseCustody, readMasterKeyFile, unwrapStoreKey } from '../../control-plane/src/index.js'
import type { CustodyRecord, Sealer } from '../../control-plane/src/index.js'
import { KeymeshError, nodeSuite } from '../../protocol/src/index.js'
import { readTokenFile, resolveClientConfig } from '../client.js'
import { clientFlags, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { connectFailure, controlPlaneFetch, loadTrust } from '../transport.js'
import { checkOutputFree, fileWriter, type DropWriter } from '../drop/files.js'
import { checkStoreSpec } from '../store-spec.js'
import { answerError } from './audit.js'

interface CreateArgs extends GlobalArgs { output: string; force: boolean; dataDir?: string; store?: string; masterKeyFile?: string }
interface RestoreArgs extends GlobalArgs { file: string; dataDir?: string; store?: string; masterKeyFile?: string }
interface InspectArgs extends GlobalArgs { file: string; masterKeyFile?: string }

/** Pool size of a PostgreSQL store here: one transaction at a time. */
const POOL = 2

/** The store --data-dir or --store names: exactly one of them. */
function storeOf(args: { dataDir?: string | undefined; store?: string | undefined }): { spec: string | undefined; dir: string; shown: string } {
  if ((args.dataDir === undefined) === (args.store === undefined)) throw cpError('CP_ERR_USAGE', 'name the store with either --data-dir DIR or --store URL')
  if (args.dataDir !== undefined) return { spec: undefined, dir: args.dataDir, shown: `sqlite:${args.dataDir}` }
  const spec = args.store as string
  const shown = checkStoreSpec(spec, '--store', { needDir: true })
  return { spec, dir: spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : '', shown }
}

interface MasterKeys {
  /** Checks the audit MACs. */
  readonly chainKey?: Uint8Array | undefined
  /** Makes and opens the trailer's seal. */
  readonly sealer?: Sealer | undefined
  wipe(): void
}

/**
 * What --master-key-file gives a backup (nothing without it): the master key opens the
 * installation's store key (custody/record.ts; an installation from before custody was
 * sealed with the master key itself), which keys the audit MACs and the seal. Both keys
 * are wiped at once; what is kept are the derived ones.
 */
function masterKeys(file: string | undefined, custody: CustodyRecord | null): MasterKeys {
  if (file === undefined) return { wipe: () => undefined }
  const master = readMasterKeyFile(file)
  const key = custody === null ? master.slice() : unwrapStoreKey(nodeSuite, custody, master)
  master.fill(0)
  if (key === null) throw cpError('CP_ERR_MASTER_KEY', `${file} is not the master key of this installation`)
  try {
    const chainKey = auditChainKey(key)
    const sealer = createSealer(key)
    return { chainKey, sealer, wipe: () => (chainKey.fill(0), sealer.wipe()) }
  } finally {
    key.fill(0)
  }
}

/**
 * Runs `f` with the keys --master-key-file gives the backup `file` (none without it),
 * and wipes them afterwards: what restore and inspect both begin with.
 */
async function withFileKeys<T>(file: string, masterKeyFile: string | undefined, f: (check: { chainKey?: Uint8Array | undefined; sealer?: Sealer | undefined }) => Promise<T>): Promise<T> {
  const keys = masterKeys(masterKeyFile, masterKeyFile === undefined ? null : await custodyInFile(file))
  try {
    return await f({ chainKey: keys.chainKey, sealer: keys.sealer })
  } finally {
    keys.wipe()
  }
}

/** The custody row a backup file holds (meta comes first), or null; read only up to the end of meta. */
async function custodyInFile(file: string): Promise<CustodyRecord | null> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity })
  try {
    for await (const line of lines) {
      let row: { t?: unknown; r?: { key?: unknown; value?: { b64?: unknown } } }
      try {
        row = JSON.parse(line) as typeof row
      } catch {
        return null // the checker says what is wrong with the file
      }
      if (row.t === undefined) continue // the header
      if (row.t !== 'meta') return null
      if (row.r?.key === CUSTODY_META && typeof row.r.value?.b64 === 'string') return parseCustody(new Uint8Array(Buffer.from(row.r.value.b64, 'base64')))
    }
    return null
  } finally {
    lines.close()
  }
}

/** The drop writer's file errors, named for what this command writes. */
async function outputStep<T>(output: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (e) {
    if (e instanceof KeymeshError && e.code === 'AGENT_ERR_DROP_FILE') throw cpError('CP_ERR_OUTPUT', `${output}: ${e.detail ?? e.message}`, { cause: e })
    throw e
  }
}

/** Writes -o FILE through `fill`, whole or not at all (see the file comment). */
async function writeOutput(args: CreateArgs, fill: (w: DropWriter) => Promise<BackupSummary>): Promise<BackupSummary> {
  await outputStep(args.output, () => checkOutputFree(args.output, args.force))
  const writer = await outputStep(args.output, () => fileWriter(args.output, { force: args.force, mode: 0o600 }))
  try {
    const summary = await fill(writer)
    await outputStep(args.output, () => writer.commit())
    return summary
  } catch (e) {
    await writer.abort()
    throw e
  }
}

/** GET /v1/sys/backup into `w`, each line checked as it arrives; the file's summary once it ended intact. */
async function download(ctx: CliContext, args: CreateArgs, w: DropWriter): Promise<BackupSummary> {
  const flags = clientFlags(args)
  const config = resolveClientConfig(flags, ctx.env)
  if (config.tokenFile === undefined) throw cpError('CP_ERR_USAGE', 'name a token file with --token-file F or KEYMESH_TOKEN_FILE')
  const token = await readTokenFile(config.tokenFile)
  // The CLI's transport: the control plane's certificate is checked with --ca-file or --cp-fingerprint.
  const send = controlPlaneFetch(await loadTrust(flags, ctx.env))
  let res: Response
  try {
    res = await send(`${config.baseUrl}/v1/sys/backup`, { headers: { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' }, redirect: 'manual' })
  } catch (err) {
    throw await connectFailure(err, { baseUrl: config.baseUrl })
  }
  if (!res.ok || res.body === null) throw await answerError(res)
  const checker = new BackupChecker()
  const lines = new LineSplitter()
  try {
    for await (const chunk of res.body) {
      await outputStep(args.output, () => w.write([chunk]))
      for (const line of lines.push(chunk)) checker.push(line)
    }
  } catch (err) {
    await res.body.cancel().catch(() => undefined)
    if (err instanceof KeymeshError) throw err
    throw cpError('CP_ERR_BACKUP_CORRUPT', 'the download was cut off', { cause: err })
  }
  return checker.finish(lines.end())
}

/** Writes the installation in a stopped (or running) store; opened read-only. */
async function offline(args: CreateArgs, w: DropWriter): Promise<BackupSummary> {
  const { spec, dir } = storeOf(args)
  const store = await openStore(spec, dir, { readOnly: true, pg: { poolSize: POOL, applicationName: 'keymesh-backup' } })
  try {
    const keys = masterKeys(args.masterKeyFile, args.masterKeyFile === undefined ? null : await custodyOf(store))
    try {
      return await writeBackup(store, (chunk) => outputStep(args.output, () => w.write([Buffer.from(chunk)])), { sealer: keys.sealer })
    } finally {
      keys.wipe()
    }
  } finally {
    await store.close()
  }
}

const view = (s: BackupSummary): Record<string, unknown> => ({
  format: `${s.header.format} v${s.header.version}`,
  createdAt: new Date(s.header.createdAt).toISOString(),
  schemaVersion: s.header.schemaVersion,
  identity: s.header.identity,
  auditHead: s.header.auditHead,
  rows: s.header.tables,
  sha256: s.sha256,
  audit: { ok: true, count: s.audit.count, macs: s.audit.macs },
  seal: s.seal,
})

const SEAL_WORDS: Record<BackupSummary['seal'], string> = {
  verified: 'seal verified with the master key',
  unchecked: 'sealed (give --master-key-file to check the seal)',
  absent: 'NOT sealed (made offline without the master key)',
}

function describe(ctx: CliContext, args: GlobalArgs, s: BackupSummary, first: string): void {
  ctx.stdout.write(`${first}\n`)
  ctx.stdout.write(`made ${new Date(s.header.createdAt).toISOString()}, schema version ${s.header.schemaVersion}, identity ${s.header.identity ?? '(not recorded: an offline backup)'}\n`)
  print(ctx, args, STORE_TABLES.map((t) => ({ table: t.name, rows: s.header.tables[t.name] })), ['table', 'rows'])
  const macs = s.audit.macs === 'checked' ? 'MACs checked' : 'MACs not checked (no --master-key-file)'
  ctx.stdout.write(`checksum ok (sha256 ${s.sha256}); ${SEAL_WORDS[s.seal]}\n`)
  ctx.stdout.write(`audit chain ok: ${s.audit.count} entries, head seq ${s.header.auditHead.seq} hash ${s.header.auditHead.hash.slice(0, 16)}…; ${macs}\n`)
}

function createCommand(ctx: CliContext): CommandModule<GlobalArgs, CreateArgs> {
  return {
    command: 'create',
    describe: 'Write a backup of the installation (keys still sealed) to a file, through the control plane or offline',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'The backup file to write (mode 0600; appears only once complete and checked)' })
        .option('force', { type: 'boolean', default: false, describe: 'Replace the output file if it exists' })
        .option('data-dir', { type: 'string', describe: 'Offline: back up the SQLite store in this data directory (opened read-only)' })
        .option('store', { type: 'string', describe: 'Offline: back up this store: sqlite:DIR or postgres://… (opened read-only)' })
        .option('master-key-file', { type: 'string', describe: 'Offline: the installation\'s master key, to seal the file (online backups are always sealed)' })
        .example('$0 backup create -o /backups/keymesh-$(date +%F).jsonl', 'through the control plane (KEYMESH_CP, an admin token)')
        .example('$0 backup create --data-dir /var/lib/keymesh -o keymesh.jsonl', 'offline, from a data directory')
        .epilog(
          'Through the control plane the backup is one consistent snapshot taken while writes go on; it needs an admin ' +
            'token and is audited (backup.create). Key material stays sealed under the master key: keep the master key ' +
            'apart from the backups, and both, since a backup restores nothing without it.',
        ) as unknown as Argv<CreateArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const online = args.dataDir === undefined && args.store === undefined
        if (online && args.masterKeyFile !== undefined) throw cpError('CP_ERR_USAGE', '--master-key-file is for offline backups (--data-dir, --store); the control plane seals its own')
        const s = await writeOutput(args, (w) => (online ? download(ctx, args, w) : offline(args, w)))
        if (args.json) return print(ctx, args, { file: args.output, ...view(s) })
        ctx.stdout.write(`wrote ${args.output}: ${s.rows} rows, audit head seq ${s.header.auditHead.seq}, sha256 ${s.sha256}, ${s.seal === 'absent' ? 'not sealed' : 'sealed'}\n`)
      }),
  }
}

function restoreCommand(ctx: CliContext): CommandModule<GlobalArgs, RestoreArgs> {
  return {
    command: 'restore <file>',
    describe: 'Restore a backup into an empty store, checking the file and the audit chain first',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('file', { type: 'string', demandOption: true, describe: 'The backup file' })
        .option('data-dir', { type: 'string', describe: 'Restore into the SQLite store of this data directory (created if absent)' })
        .option('store', { type: 'string', describe: 'Restore into this store: sqlite:DIR or postgres://…[?schema=NAME] (created or migrated first)' })
        .option('master-key-file', { type: 'string', describe: 'The installation\'s master key: opens the file\'s seal and checks every audit MAC (so a forged file is refused)' })
        .example('$0 backup restore keymesh.jsonl --data-dir /var/lib/keymesh --master-key-file /etc/keymesh/master.key', 'onto a new host')
        .example('$0 backup restore keymesh.jsonl --store postgres://kms@db.internal/keymesh', 'into an empty PostgreSQL schema')
        .epilog(
          'Nothing is written when the file is truncated or damaged (CP_ERR_BACKUP_CORRUPT), its audit chain does not ' +
            'verify (CP_ERR_BACKUP_CHAIN), its seal does not open with --master-key-file (CP_ERR_BACKUP_SEAL), its schema version is not this keymesh\'s (CP_ERR_BACKUP_VERSION), or the ' +
            'target already holds an installation (CP_ERR_STORE_NOT_EMPTY). Start the control plane on the restored ' +
            'store with the master key of the installation the backup came from.',
        ) as unknown as Argv<RestoreArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const { spec, dir, shown } = storeOf(args)
        await withFileKeys(args.file, args.masterKeyFile, async (check) => {
          // Checked before the target is opened (or created): a bad file leaves no trace.
          const checked = await checkBackupFile(args.file, check)
          const target = await openStore(spec, dir, { pg: { poolSize: POOL, applicationName: 'keymesh-restore' } })
          let result
          try {
            result = await restoreBackup(args.file, target, { ...check, checked })
          } finally {
            await target.close()
          }
          if (args.json) return print(ctx, args, { file: args.file, store: shown, ...view(result), restored: { count: result.restored.count, headSeq: result.restored.head.seq } })
          describe(ctx, args, result, `restored ${args.file} into ${shown}`)
          ctx.stdout.write(`audit chain verified on the target: ${result.restored.count} entries, head seq ${result.restored.head.seq}, the backup's\n`)
        })
      }),
  }
}

function inspectCommand(ctx: CliContext): CommandModule<GlobalArgs, InspectArgs> {
  return {
    command: 'inspect <file>',
    describe: 'Show a backup\'s header and row counts, and check its checksum and audit chain',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('file', { type: 'string', demandOption: true, describe: 'The backup file' })
        .option('master-key-file', { type: 'string', describe: 'The installation\'s master key, to open the seal and check every audit MAC too' })
        .example('$0 backup inspect keymesh.jsonl', 'is this file whole, and what does it hold?') as unknown as Argv<InspectArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        await withFileKeys(args.file, args.masterKeyFile, async (check) => {
          const s = await checkBackupFile(args.file, check)
          if (args.json) return print(ctx, args, { file: args.file, ...view(s) })
          describe(ctx, args, s, `${args.file}: ${s.header.format} version ${s.header.version}, ${s.rows} rows`)
        })
      }),
  }
}

export function backupCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'backup <command>',
    describe: 'Back up an installation to a file, restore it, or inspect a backup',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(createCommand(ctx))
        .command(restoreCommand(ctx))
        .command(inspectCommand(ctx))
        .demandCommand(1, 'Name a backup command: create, restore or inspect.'),
    handler: () => undefined,
  }
}
