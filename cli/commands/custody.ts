// Key custody from the command line (control-plane/src/custody/*):
//   keymesh control-plane init --data-dir DIR [--store URL] (--shares N --threshold K [-o DIR] | --pkcs11-module M … | --key-file F) [--from-key-file OLD]
//   keymesh unseal [--share-file F|-] [--reset] [--status]   no token: the shares are the credential
//   keymesh seal                                              admin token
//   keymesh rekey --shares N --threshold K [-o DIR]           admin token; new shares, shown once
// Shares are printed on stdout (one a line) or, with -o DIR, written to DIR/share-I.txt
// (0600, never over an existing file). Without --share-file, unseal reads one share
// from the terminal without echo, or from stdin when it is not a terminal.
import { mkdirSync, openSync, closeSync, writeSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Argv, CommandModule } from 'yargs'

import { cpError, type SealStatus } from '../../control-plane/src/index.js'
import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import type { Env } from '../client.js'
import { createLogger } from '../logger.js'
import { checkStoreSpec } from './control-plane.js'

/** Where development master keys go: $KEYMESH_CONFIG_HOME, $XDG_CONFIG_HOME/keymesh, ~/.config/keymesh (none without HOME). */
export function configHome(env: Env): string | undefined {
  if (env['KEYMESH_CONFIG_HOME']) return env['KEYMESH_CONFIG_HOME']
  if (env['XDG_CONFIG_HOME']) return join(env['XDG_CONFIG_HOME'], 'keymesh')
  return env['HOME'] ? join(env['HOME'], '.config', 'keymesh') : undefined
}

interface InitArgs extends GlobalArgs {
  dataDir: string
  store?: string
  shares?: number
  threshold?: number
  keyFile?: string
  fromKeyFile?: string
  out?: string
  pkcs11Module?: string
  pkcs11Slot?: number
  pkcs11TokenLabel?: string
  pkcs11PinFile?: string
  pkcs11KeyLabel?: string
  pkcs11CreateKey?: boolean
}

/** Prints the shares, or writes them one a file into `dir` (0600, refusing to overwrite). */
function handOutShares(ctx: CliContext, args: GlobalArgs & { out?: string | undefined }, shares: readonly string[], extra: Record<string, unknown>): void {
  if (args.out !== undefined) {
    mkdirSync(args.out, { recursive: true, mode: 0o700 })
    const files = shares.map((share, i) => {
      const path = join(args.out as string, `share-${i + 1}.txt`)
      let fd: number
      try {
        fd = openSync(path, 'wx', 0o600)
      } catch (cause) {
        throw cpError('CP_ERR_OUTPUT', `cannot write ${path} (a share file is never overwritten)`, { cause })
      }
      try {
        writeSync(fd, `${share}\n`)
      } finally {
        closeSync(fd)
      }
      return path
    })
    print(ctx, args, { ...extra, shareFiles: files })
    ctx.stderr.write(`keymesh: give each share file to a different operator, then delete it here\n`)
    return
  }
  if (args.json) return print(ctx, args, { ...extra, shares })
  print(ctx, args, extra)
  for (const share of shares) ctx.stdout.write(`${share}\n`)
  ctx.stderr.write('keymesh: give each share to a different operator; they are not shown again\n')
}

export function controlPlaneInitCommand(ctx: CliContext): CommandModule<GlobalArgs, InitArgs> {
  return {
    command: 'init',
    describe: 'Choose where the master key lives, before the first start: Shamir shares or an HSM (production), or a key file (development)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('data-dir', { type: 'string', demandOption: true, describe: 'The data directory the control plane will use' })
        .option('store', { type: 'string', describe: 'As for control-plane: sqlite:DIR or postgres://… (default: SQLite in --data-dir)' })
        .option('shares', { type: 'number', describe: 'Split a new master key into N shares; the control plane then starts sealed until keymesh unseal' })
        .option('threshold', { type: 'number', describe: 'Shares needed to unseal (with --shares)' })
        .option('out', { alias: 'o', type: 'string', describe: 'Write the shares to DIR/share-I.txt (0600) instead of printing them' })
        .option('key-file', { type: 'string', describe: 'Keep the master key in this file (made when absent), outside --data-dir; start with --master-key-file FILE' })
        .option('from-key-file', { type: 'string', describe: 'A store from before key custody: its old master key (e.g. DIR/master.key, removed from DIR once moved)' })
        .option('pkcs11-module', { type: 'string', describe: 'An HSM wraps the master key and unseals at every start: its PKCS#11 library (.so)' })
        .option('pkcs11-slot', { type: 'number', describe: 'The HSM slot ID (or --pkcs11-token-label)' })
        .option('pkcs11-token-label', { type: 'string', describe: 'The HSM token label (or --pkcs11-slot)' })
        .option('pkcs11-pin-file', { type: 'string', describe: 'File with the user PIN (0600); its path is kept, never the PIN' })
        .option('pkcs11-key-label', { type: 'string', describe: 'CKA_LABEL of the AES-256 key on the token' })
        .option('pkcs11-create-key', { type: 'boolean', describe: 'Create that key on the token first (sensitive, not extractable)' })
        .conflicts('shares', 'key-file')
        .conflicts('pkcs11-module', ['shares', 'key-file'])
        .example('$0 control-plane init --data-dir /var/lib/keymesh --shares 5 --threshold 3 -o ./shares', 'production: five shares, any three unseal')
        .example('$0 control-plane init --data-dir ./cp --from-key-file ./cp/master.key --shares 3 --threshold 2', 'move an older installation to shares') as unknown as Argv<InitArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const storeUrl = checkStoreSpec(args.store)
        if (args.shares !== undefined && args.threshold === undefined) throw cpError('CP_ERR_USAGE', '--shares needs --threshold K')
        const { initCustody } = await import('../../control-plane/src/index.js')
        const result = await initCustody({
          dataDir: args.dataDir,
          storeUrl,
          shares: args.shares,
          threshold: args.threshold,
          keyFile: args.keyFile,
          fromKeyFile: args.fromKeyFile,
          pkcs11: args.pkcs11Module === undefined ? undefined : {
            module: args.pkcs11Module,
            ...(args.pkcs11Slot !== undefined ? { slot: args.pkcs11Slot } : {}),
            ...(args.pkcs11TokenLabel !== undefined ? { tokenLabel: args.pkcs11TokenLabel } : {}),
            pinFile: args.pkcs11PinFile ?? '',
            keyLabel: args.pkcs11KeyLabel ?? '',
            createKey: args.pkcs11CreateKey === true,
          },
          logger: createLogger('warn'),
        })
        const summary: Record<string, unknown> = { installation: result.installation, custody: result.kind }
        if (result.keyFile !== undefined) summary['keyFile'] = result.keyFile
        if (result.migratedFrom !== undefined) summary['movedFrom'] = result.migratedFrom
        if (result.shares) handOutShares(ctx, args, result.shares, { ...summary, threshold: args.threshold })
        else print(ctx, args, summary)
        if (result.migratedFrom !== undefined && !result.removed) {
          ctx.stderr.write(`keymesh: ${result.migratedFrom} still opens this store on its own: destroy it\n`)
        }
        ctx.stderr.write(
          result.kind === 'shares' ? 'keymesh: the control plane now starts sealed; keymesh unseal with threshold shares\n'
            : result.kind === 'pkcs11' ? 'keymesh: the control plane now unseals itself through the HSM at every start\n'
            : `keymesh: start with --master-key-file ${result.keyFile}\n`,
        )
      }),
  }
}

interface UnsealArgs extends GlobalArgs { shareFile?: string; reset?: boolean; status?: boolean }

/** One line from a terminal without echo. */
async function promptHidden(ctx: CliContext, prompt: string): Promise<string> {
  const input = process.stdin
  ctx.stderr.write(prompt)
  input.setRawMode(true)
  input.resume()
  let line = ''
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return line
        if (ch === '\u0003') throw cpError('CP_ERR_USAGE', 'interrupted')
        line = ch === '\u007f' ? line.slice(0, -1) : line + ch
      }
    }
    return line
  } finally {
    input.setRawMode(false)
    input.pause()
    ctx.stderr.write('\n')
  }
}

async function readShare(ctx: CliContext, file: string | undefined): Promise<string> {
  if (file !== undefined && file !== '-') {
    try {
      return (await readFile(file, 'utf8')).trim()
    } catch (cause) {
      throw cpError('CP_ERR_USAGE', `cannot read the share file ${file}`, { cause })
    }
  }
  if (file === undefined && process.stdin.isTTY) return (await promptHidden(ctx, 'Unseal share: ')).trim()
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8').trim()
}

function showStatus(ctx: CliContext, args: GlobalArgs, s: SealStatus): void {
  if (args.json) return print(ctx, args, s)
  const progress = s.sealed && s.threshold !== undefined ? `, ${s.progress?.have ?? 0} of ${s.threshold} shares given` : ''
  ctx.stdout.write(`${s.sealed ? 'sealed' : 'unsealed'} (custody ${String(s.kind)}${progress})\n`)
}

export function unsealCommand(ctx: CliContext): CommandModule<GlobalArgs, UnsealArgs> {
  return {
    command: 'unseal',
    describe: 'Give the control plane one unseal share (it unseals once threshold shares are in); no token needed',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('share-file', { type: 'string', describe: 'Read the share from this file (- for stdin); else asked on the terminal without echo' })
        .option('reset', { type: 'boolean', describe: 'Forget the shares given so far' })
        .option('status', { type: 'boolean', describe: 'Only show whether it is sealed and the progress' })
        .example('$0 unseal --cp https://kms.internal:7400', 'asks for your share without echoing it')
        .example('$0 unseal --share-file share-2.txt', 'from a file') as unknown as Argv<UnsealArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args, false)
        if (args.status) return showStatus(ctx, args, await client.get<SealStatus>('/v1/sys/seal-status'))
        if (args.reset) return showStatus(ctx, args, await client.post<SealStatus>('/v1/sys/unseal', { reset: true }))
        const share = await readShare(ctx, args.shareFile)
        if (share === '') throw cpError('CP_ERR_USAGE', 'no share given')
        showStatus(ctx, args, await client.post<SealStatus>('/v1/sys/unseal', { share }))
      }),
  }
}

export function sealCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'seal',
    describe: 'Seal the control plane: it zeroes its keys and serves nothing until unsealed again (admin; share custody only)',
    builder: (y: Argv<GlobalArgs>) => y.example('$0 seal', 'an operator suspects the host; the keys leave memory now'),
    handler: (args) =>
      run(ctx, args, async () => {
        showStatus(ctx, args, await (await connect(ctx, args)).post<SealStatus>('/v1/sys/seal'))
      }),
  }
}

interface RekeyArgs extends GlobalArgs { shares: number; threshold: number; out?: string }

export function rekeyCommand(ctx: CliContext): CommandModule<GlobalArgs, RekeyArgs> {
  return {
    command: 'rekey',
    describe: 'Make a new master key and new shares; the store key is re-wrapped, nothing stops (admin, unsealed). The old shares stop working',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('shares', { type: 'number', demandOption: true, describe: 'How many shares' })
        .option('threshold', { type: 'number', demandOption: true, describe: 'Shares needed to unseal' })
        .option('out', { alias: 'o', type: 'string', describe: 'Write the shares to DIR/share-I.txt (0600) instead of printing them' })
        .example('$0 rekey --shares 5 --threshold 3 -o ./new-shares', 'after an operator leaves; also moves a development key file to shares') as unknown as Argv<RekeyArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const made = await client.post<{ shares: string[]; status: SealStatus }>('/v1/sys/rekey', { shares: args.shares, threshold: args.threshold })
        handOutShares(ctx, args, made.shares, { installation: made.status.installation, custody: made.status.kind, threshold: args.threshold })
      }),
  }
}
