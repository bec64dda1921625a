// `keymesh control-plane`: runs the KMS server until SIGTERM/SIGINT.
//
// Flags, KEYMESH_* variables and --config FILE are merged by loadControlPlaneConfig
// (flag > env > file > default). No yargs defaults are declared for those options on
// purpose: a yargs default would look like a flag and beat the environment and the file.
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Argv, CommandModule } from 'yargs'

import { ADMIN_TOKEN_FILE, IDENTITY_PUB_FILE, cpError } from '../../control-plane/src/index.js'
import { checkStoreSpec as checkSpec } from '../store-spec.js'
import { run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { createLogger, LOG_LEVELS } from '../logger.js'
import { DEFAULT_LISTEN, loadControlPlaneConfig } from '../control-plane-config.js'
import { serveTls } from '../tls.js'
import { configHome, controlPlaneInitCommand } from './custody.js'

export { DEFAULT_LISTEN }

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

/** The data directory, when it exists, must be a directory: said before anything else is tried. */
export function checkDataDir(dir: string): void {
  let isDir = true
  try {
    isDir = statSync(dir).isDirectory()
  } catch {
    return // absent: the control plane creates it; unreadable: it says so itself
  }
  if (!isDir) throw cpError('CP_ERR_DATA_DIR', `${dir} is not a directory; give --data-dir a directory (it is created if missing)`)
}

/** The line an operator reads first: where the control plane answers and which files it made. */
export function startedLine(url: string, dataDir: string): string {
  const token = join(dataDir, ADMIN_TOKEN_FILE)
  const files = [`agents pin ${join(dataDir, IDENTITY_PUB_FILE)}`, ...(existsSync(token) ? [`admin token in ${token}`] : [])]
  return `keymesh: control plane at ${url} (export KEYMESH_CP=${url}); ${files.join('; ')}\n`
}

export function controlPlaneCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'control-plane',
    describe: 'Run the control plane (admin API and agent endpoint on one port)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .usage('$0 control-plane [options]\n\nRuns the control plane until SIGTERM or SIGINT. Every option can also come from its KEYMESH_* variable or a --config file; a flag beats the variable, which beats the file.')
        .option('listen', {
          type: 'string',
          describe: `HOST:PORT for the admin API and the agent WebSocket endpoint. Default ${DEFAULT_LISTEN} (env KEYMESH_LISTEN)`,
        })
        .option('data-dir', {
          type: 'string',
          describe: 'Directory for the embedded store, identity.pub, admin.token and tls.crt/tls.key; never the master key. Required (env KEYMESH_DATA_DIR)',
        })
        .option('master-key-file', {
          type: 'string',
          describe: 'File holding the 32-byte master key (raw or base64, mode 0600; never in --data-dir). Else env KEYMESH_MASTER_KEY (base64), ' +
            'else the development key made on first start in $KEYMESH_CONFIG_HOME (or $XDG_CONFIG_HOME/keymesh, ~/.config/keymesh). ' +
            'An installation made with control-plane init --shares starts sealed instead: keymesh unseal',
        })
        .option('store', {
          type: 'string',
          // Help shows where the value comes from, never its text: the URL may hold a password.
          ...(ctx.env['KEYMESH_STORE'] !== undefined ? { defaultDescription: 'from KEYMESH_STORE' } : {}),
          describe:
            'Where the control plane keeps its data: sqlite:DIR, or postgres://HOST[:PORT]/DB[?schema=NAME] shared by several ' +
            'control planes (each with its own --data-dir and --listen, all with the same --master-key-file). ' +
            'Default: the embedded SQLite store in --data-dir (env KEYMESH_STORE)',
        })
        .command(controlPlaneInitCommand(ctx))
        .option('destroy-guard-window', {
          type: 'string',
          describe: 'A key version used within this long is not scheduled for destruction without --force --reason (e.g. 30d, 0 to turn off). Default 30d (env KEYMESH_DESTROY_GUARD_WINDOW)',
        })
        .option('integrity-check-interval', {
          type: 'string',
          describe: 'SQLite: how often PRAGMA quick_check reads the whole store file after the check at start; damage makes /readyz answer 503 (e.g. 6h, 0 to turn off). Default 6h (env KEYMESH_INTEGRITY_CHECK_INTERVAL)',
        })
        .option('audit-verify-interval', {
          type: 'string',
          describe: 'How often the audit chain is verified from where the last pass stopped; a break is logged at error and counted in keymesh_cp_audit_chain_broken (e.g. 10m, 0 to turn off). Default 10m (env KEYMESH_AUDIT_VERIFY_INTERVAL)',
        })
        .option('log-level', { type: 'string', choices: LOG_LEVELS, describe: 'Log level (JSON logs on stdout). Default info (env KEYMESH_LOG_LEVEL)' })
        .option('tls-cert', { type: 'string', describe: 'PEM certificate (chain) to serve HTTPS with, with --tls-key. Default: DIR/tls.crt, a self-signed one made on the first start; its sha256: fingerprint is logged at every start (env KEYMESH_TLS_CERT)' })
        .option('tls-key', { type: 'string', describe: 'PEM private key of --tls-cert (env KEYMESH_TLS_KEY)' })
        .option('tls-san', { type: 'string', array: true, describe: 'More DNS names or IP addresses for the self-signed certificate (localhost, 127.0.0.1, ::1 and the listen host are always in it); repeat or give a comma list (env KEYMESH_TLS_SAN)' })
        .option('insecure-http', { type: 'boolean', describe: 'Serve plain HTTP instead of HTTPS; off loopback it warns at every start (env KEYMESH_INSECURE_HTTP)' })
        .option('config', { type: 'string', describe: 'JSON file whose keys are these option names (kebab-case or camelCase) (env KEYMESH_CONFIG)' })
        .example('$0 control-plane --listen 127.0.0.1:7400 --data-dir ./cp', 'start on the embedded store, over HTTPS with a certificate made in ./cp (clients: --ca-file ./cp/tls.crt)')
        .example(
          '$0 control-plane --data-dir ./cp2 --store postgres://kms@db.internal/keymesh --master-key-file ./master.key',
          'one of several replicas on a PostgreSQL database (the first to start initialises it)',
        ) as unknown as Argv<GlobalArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const config = loadControlPlaneConfig(args as unknown as Record<string, unknown>, ctx.env)
        const { host, port } = parseHostPort(config.listen)
        const storeUrl = checkStoreSpec(config.store)
        const destroyGuardMs = parseDuration(config.destroyGuardWindow, '--destroy-guard-window')
        const integrityCheckIntervalMs = parseDuration(config.integrityCheckInterval, '--integrity-check-interval')
        const auditVerifyIntervalMs = parseDuration(config.auditVerifyInterval, '--audit-verify-interval')
        checkDataDir(config.dataDir)
        const logger = createLogger(config.logLevel)
        // Loaded here, not at the top: the server (pg, prom-client, ws …) is ~25 MB
        // of RSS that every other command, a drop among them, should not pay for.
        const { bindPort, startControlPlane } = await import('../../control-plane/src/index.js')
        const masterKeyEnv = ctx.env['KEYMESH_MASTER_KEY']
        ctx.forgetEnv('KEYMESH_MASTER_KEY')
        // The port first: a start that cannot listen writes no file, a certificate neither.
        const listener = await bindPort(host, port)
        const tls = await serveTls(config, host, logger).catch((e: unknown) => {
          listener.close()
          throw e
        })
        const cp = await startControlPlane({
          host,
          port,
          listener,
          dataDir: config.dataDir,
          masterKeyFile: config.masterKeyFile,
          ...(tls ? { tls } : {}),
          masterKeyEnv,
          keyDir: configHome(ctx.env),
          storeUrl,
          logger,
          settings: { destroyGuardMs, integrityCheckIntervalMs, auditVerifyIntervalMs },
        })
        ctx.stderr.write(startedLine(cp.url, config.dataDir))
        const signal = await ctx.stopSignal
        logger.info({ signal }, 'stopping')
        await cp.close()
        logger.flush()
      }),
  }
}
