// `keymesh control-plane`: runs the KMS server until SIGTERM/SIGINT.
import type { Argv, CommandModule } from 'yargs'

import { cpError } from '../../control-plane/src/index.js'
import { checkStoreSpec as checkSpec } from '../store-spec.js'
import { run, type CliContext, type GlobalArgs } from '../context.js'
import { createLogger, LOG_LEVELS } from '../logger.js'
import { configHome, controlPlaneInitCommand } from './custody.js'

export const DEFAULT_LISTEN = '127.0.0.1:7400'

interface Args extends GlobalArgs {
  listen: string
  dataDir: string
  masterKeyFile?: string
  store?: string
  logLevel: string
}

/** `--store`, checked before anything is created on disk (cli/store-spec.ts); passed on unchanged. */
export function checkStoreSpec(spec: string | undefined): string | undefined {
  if (spec !== undefined) checkSpec(spec, '--store')
  return spec
}

export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw cpError('CP_ERR_USAGE', `listen address must be HOST:PORT (e.g. ${DEFAULT_LISTEN}), got ${JSON.stringify(text)}`)
  return { host: (m[1] ?? m[2]) as string, port }
}

export function controlPlaneCommand(ctx: CliContext): CommandModule<GlobalArgs, Args> {
  return {
    command: 'control-plane',
    describe: 'Run the control plane (admin API and agent endpoint on one port)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('listen', {
          type: 'string',
          default: ctx.env['KEYMESH_LISTEN'] ?? DEFAULT_LISTEN,
          describe: 'HOST:PORT for the admin API and the agent WebSocket endpoint (env KEYMESH_LISTEN)',
        })
        .option('data-dir', {
          type: 'string',
          demandOption: ctx.env['KEYMESH_DATA_DIR'] === undefined,
          ...(ctx.env['KEYMESH_DATA_DIR'] !== undefined ? { default: ctx.env['KEYMESH_DATA_DIR'] } : {}),
          describe: 'Directory for the embedded store, identity.pub and admin.token; never the master key (env KEYMESH_DATA_DIR)',
        })
        .option('master-key-file', {
          type: 'string',
          describe: 'File holding the 32-byte master key (raw or base64, mode 0600; never in --data-dir). Else env KEYMESH_MASTER_KEY (base64), ' +
            'else the development key made on first start in $KEYMESH_CONFIG_HOME (or $XDG_CONFIG_HOME/keymesh, ~/.config/keymesh). ' +
            'An installation made with control-plane init --shares starts sealed instead: keymesh unseal',
        })
        .option('store', {
          type: 'string',
          // Help shows where the default came from, never its text: the URL may hold a password.
          ...(ctx.env['KEYMESH_STORE'] !== undefined ? { default: ctx.env['KEYMESH_STORE'], defaultDescription: 'from KEYMESH_STORE' } : {}),
          describe:
            'Where the control plane keeps its data: sqlite:DIR, or postgres://HOST[:PORT]/DB[?schema=NAME] shared by several ' +
            'control planes (each with its own --data-dir and --listen, all with the same --master-key-file). ' +
            'Default: the embedded SQLite store in --data-dir (env KEYMESH_STORE)',
        })
        .command(controlPlaneInitCommand(ctx))
        .option('log-level', { type: 'string', choices: LOG_LEVELS, default: 'info', describe: 'Log level (JSON logs on stdout)' })
        .example('$0 control-plane --listen 127.0.0.1:7400 --data-dir ./cp', 'start on the embedded store')
        .example(
          '$0 control-plane --data-dir ./cp2 --store postgres://kms@db.internal/keymesh --master-key-file ./master.key',
          'one of several replicas on a PostgreSQL database (the first to start initialises it)',
        ) as unknown as Argv<Args>,
    handler: (args) =>
      run(ctx, args, async () => {
        const { host, port } = parseHostPort(args.listen)
        const storeUrl = checkStoreSpec(args.store)
        const logger = createLogger(args.logLevel)
        // Loaded here, not at the top: the server (pg, prom-client, ws …) is ~25 MB
        // of RSS that every other command, a drop among them, should not pay for.
        const { startControlPlane } = await import('../../control-plane/src/index.js')
        const masterKeyEnv = ctx.env['KEYMESH_MASTER_KEY']
        ctx.forgetEnv('KEYMESH_MASTER_KEY')
        const cp = await startControlPlane({
          host,
          port,
          dataDir: args.dataDir,
          masterKeyFile: args.masterKeyFile,
          masterKeyEnv,
          keyDir: configHome(ctx.env),
          storeUrl,
          logger,
        })
        const signal = await ctx.stopSignal
        logger.info({ signal }, 'stopping')
        await cp.close()
        logger.flush()
      }),
  }
}
