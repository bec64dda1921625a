// `keymesh store migrate --from sqlite:DIR --to postgres://…`: copies an
// installation into another store (control-plane/src/store/copy.ts). Works
// offline on the stores themselves: no control plane, no token, no master key.
// The source is opened read-only; the target is created or migrated to this
// keymesh's schema first, and must hold no installation.
import type { Argv, CommandModule } from 'yargs'

import { cpError } from '../../control-plane/src/index.js'
import { copyStore, STORE_TABLES } from '../../control-plane/src/index.js'
import { openStore } from '../../control-plane/src/index.js'
import { checkStoreSpec } from '../store-spec.js'
import type { Store } from '../../control-plane/src/index.js'
import { print, run, type CliContext, type GlobalArgs } from '../context.js'

interface MigrateArgs extends GlobalArgs {
  from: string
  to: string
}

/** Pool size of the target: the copy runs one transaction at a time. */
const TARGET_POOL = 2

const sqliteDir = (spec: string): string => (spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : '')

async function migrate(ctx: CliContext, args: MigrateArgs): Promise<void> {
  const from = checkStoreSpec(args.from, '--from', { needDir: true })
  const to = checkStoreSpec(args.to, '--to', { needDir: true })
  if (args.from === args.to) throw cpError('CP_ERR_USAGE', '--from and --to name the same store')
  const pg = { poolSize: TARGET_POOL, applicationName: 'keymesh-store-migrate' }
  const source = await openStore(args.from, sqliteDir(args.from), { readOnly: true, pg })
  let target: Store | undefined
  try {
    target = await openStore(args.to, sqliteDir(args.to), { pg })
    const result = await copyStore(source, target)
    const head = { seq: result.audit.head.seq, hash: Buffer.from(result.audit.head.hash).toString('hex') }
    if (args.json) {
      print(ctx, args, { from, to, schemaVersion: result.schemaVersion, rows: result.rows, audit: { ok: true, count: result.audit.count, head } })
      return
    }
    ctx.stdout.write(`copied ${from} to ${to}, schema version ${result.schemaVersion}\n`)
    print(ctx, args, STORE_TABLES.map((t) => ({ table: t.name, rows: result.rows[t.name] })), ['table', 'rows'])
    ctx.stdout.write(`audit chain verified on the target: ${result.audit.count} entries, head seq ${head.seq} hash ${head.hash.slice(0, 16)}…, the same as the source's\n`)
  } finally {
    await target?.close()
    await source.close()
  }
}

function migrateCommand(ctx: CliContext): CommandModule<GlobalArgs, MigrateArgs> {
  return {
    command: 'migrate',
    describe: 'Copy an installation (keys still sealed, audit chain verified) into another, empty store',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('from', { type: 'string', demandOption: true, describe: 'The store to copy: sqlite:DIR (the data directory), opened read-only' })
        .option('to', {
          type: 'string',
          demandOption: true,
          describe: 'The empty store to copy into: postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME] (created or migrated first)',
        })
        .example(
          '$0 store migrate --from sqlite:/var/lib/keymesh --to postgres://kms@db.internal/keymesh',
          'move an installation onto PostgreSQL',
        )
        .epilog(
          'The copy is taken from one consistent snapshot of the source: changes made to it after that moment are not ' +
            'copied, so for a cut-over stop the old control plane first. Key material is copied sealed and never opened; ' +
            'start the control planes on the new store with the old installation\'s master key ' +
            '(--store postgres://… --master-key-file FILE, the development key file or the old DIR/master.key) or unseal them with its shares. Nothing is written when the target already holds ' +
            'an installation, the schema versions differ, or the source\'s audit chain does not verify.',
        ) as unknown as Argv<MigrateArgs>,
    handler: (args) => run(ctx, args, () => migrate(ctx, args)),
  }
}

export function storeCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'store <command>',
    describe: 'Work on a store directly (offline)',
    builder: (y: Argv<GlobalArgs>) => y.command(migrateCommand(ctx)).demandCommand(1, 'Name a store command: migrate.'),
    handler: () => undefined,
  }
}
