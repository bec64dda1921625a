// `keymesh key …`: create, inspect, rotate and retire keys, and grant services rights
// on them, through the admin API (control-plane/src/api/keys.ts). With --json every
// subcommand prints the API's answer exactly; otherwise a table or `field: value` lines.
// Only the error table is imported up front: `key list` must start fast
// (test/cli/light.test.ts), so the subcommands that need a package load it themselves.
import { readFile, writeFile } from 'node:fs/promises'
import type { Argv, CommandModule } from 'yargs'

import { cpError } from '../../control-plane/src/errors.js'
import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { formatDuration, parseDuration } from '../duration.js'
import { humanTime } from '../output.js'

interface KeyArgs extends GlobalArgs {
  name: string
  type?: string
  rotateEvery?: string
  rotation?: boolean
  minDecryptVersion?: number
  version?: number
  in?: string
  service?: string
  allow?: string
  output?: string
  force?: boolean
  reason?: string
  importId?: string
  publicKey?: string
  materialFile?: string
}

interface VersionView {
  version: number; state: string; createdAt: number; stateChangedAt: number; destroyAt: number | null; notAfter: number | null
  origin?: string; lastUsedAt?: number | null; uses30d?: number; services?: string[]
}
interface ImportParams { importId: string; name: string; type: string; publicKey: string; expiresAt: number }
interface KeyView {
  name: string; type: string; primaryVersion: number; minDecryptVersion: number
  rotationPeriodMs: number | null; nextRotationAt: number | null; createdAt: number
  pairServices?: string[]; versions: VersionView[]
}

const path = (name: string, ...rest: (string | number)[]): string =>
  ['/v1/keys', encodeURIComponent(name), ...rest.map((p) => encodeURIComponent(String(p)))].join('/')
const time = humanTime
const period = (ms: number | null): string => (ms === null ? 'none' : formatDuration(ms))

function versionOf(args: KeyArgs): number {
  const v = args.version
  if (v === undefined || !Number.isSafeInteger(v) || v < 1) throw cpError('CP_ERR_USAGE', '--version must be a whole number from 1')
  return v
}

function summary(k: KeyView): Record<string, unknown> {
  return {
    name: k.name, type: k.type, primary: k.primaryVersion, minDecrypt: k.minDecryptVersion,
    rotateEvery: period(k.rotationPeriodMs), nextRotation: time(k.nextRotationAt), versions: k.versions.length,
  }
}

function versionRows(k: KeyView): Record<string, unknown>[] {
  return k.versions.map((v) => ({
    version: v.version, state: v.state, primary: v.version === k.primaryVersion ? 'yes' : '', created: time(v.createdAt),
    changed: time(v.stateChangedAt), destroyAt: time(v.destroyAt), notAfter: time(v.notAfter),
    origin: v.origin ?? 'generated', lastUsed: time(v.lastUsedAt ?? null), uses30d: v.uses30d ?? 0, usedBy: (v.services ?? []).join(','),
  }))
}

/** One subcommand: its spelling, help, options, examples, and what it does. */
function sub(
  ctx: CliContext,
  command: string,
  describe: string,
  options: (y: Argv<KeyArgs>) => Argv<KeyArgs>,
  examples: [string, string][],
  act: (args: KeyArgs) => Promise<void>,
): CommandModule<GlobalArgs, KeyArgs> {
  return {
    command,
    describe,
    builder: (y: Argv<GlobalArgs>) => {
      // `--version N` names a key version here, as the operator contract spells it,
      // not the program version: yargs must give the flag up in key subcommands.
      let b = options(y.version(false) as Argv<KeyArgs>)
      for (const [cmd, what] of examples) b = b.example(cmd, what)
      return b as unknown as Argv<KeyArgs>
    },
    handler: (args) => run(ctx, args, () => act(args)),
  }
}

const nameArg = (y: Argv<KeyArgs>): Argv<KeyArgs> => y.positional('name', { type: 'string', describe: 'Key name (a pair key by its pair id, e.g. api:web)' }) as Argv<KeyArgs>
const versionOpt = (y: Argv<KeyArgs>): Argv<KeyArgs> =>
  nameArg(y).option('version', { type: 'number', demandOption: true, describe: 'Key version number' }) as Argv<KeyArgs>
const grantOpts = (y: Argv<KeyArgs>): Argv<KeyArgs> =>
  nameArg(y)
    .option('service', { type: 'string', demandOption: true, describe: 'Service the rights are for' })
    .option('allow', { type: 'string', demandOption: true, describe: 'Comma-separated rights: encrypt, decrypt, generate-data-key, rotate, manage, sign, verify, hmac' }) as Argv<KeyArgs>

export function keyCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  const state = (command: string, to: string, describe: string): CommandModule<GlobalArgs, KeyArgs> =>
    sub(ctx, `${command} <name>`, describe, versionOpt, [[`$0 key ${command} orders --version 1`, describe]], async (args) => {
      const cp = await connect(ctx, args)
      print(ctx, args, await cp.post(path(args.name, 'versions', versionOf(args), 'state'), { state: to }))
    })

  const grant = (revoke: boolean) => async (args: KeyArgs): Promise<void> => {
    const { parseRights } = await import('../../control-plane/src/index.js')
    const rights = parseRights(args.allow ?? '')
    const cp = await connect(ctx, args)
    const body = { service: args.service, rights }
    print(ctx, args, await cp.post(path(args.name, 'grants', ...(revoke ? ['revoke'] : [])), body))
  }

  const commands: CommandModule<GlobalArgs, KeyArgs>[] = [
    sub(ctx, 'create <name>', 'Create an aead, x25519, ed25519, ecdsa-p256 or hmac-sha256 key (pair keys come from intentions)',
      (y) => nameArg(y)
        .option('type', { type: 'string', choices: ['aead', 'x25519', 'ed25519', 'ecdsa-p256', 'hmac-sha256'], demandOption: true, describe: 'aead: ChaCha20-Poly1305; x25519: key agreement; ed25519, ecdsa-p256: signatures; hmac-sha256: MACs' })
        .option('rotate-every', { type: 'string', describe: 'Rotate on a schedule, e.g. 30d or 12h' }) as Argv<KeyArgs>,
      [['$0 key create orders --type aead', 'an encryption key'], ['$0 key create orders --type aead --rotate-every 30d', 'rotated monthly'], ['$0 key create releases --type ed25519', 'a signing key']],
      async (args) => {
        const body = { name: args.name, type: args.type, ...(args.rotateEvery !== undefined ? { rotationPeriodMs: parseDuration(args.rotateEvery, '--rotate-every') } : {}) }
        const cp = await connect(ctx, args)
        const key = await cp.post<KeyView>('/v1/keys', body)
        print(ctx, args, args.json ? key : summary(key))
      }),
    sub(ctx, 'list', 'List keys', (y) => y.option('type', { type: 'string', choices: ['aead', 'x25519', 'pair', 'ed25519', 'ecdsa-p256', 'hmac-sha256'], describe: 'Only keys of this type' }) as Argv<KeyArgs>,
      [['$0 key list', 'every key'], ['$0 key list --type pair --json', 'pair keys, as JSON']],
      async (args) => {
        const cp = await connect(ctx, args)
        const { keys } = await cp.get<{ keys: KeyView[] }>('/v1/keys', { type: args.type })
        if (args.json) print(ctx, args, { keys })
        else print(ctx, args, keys.map(summary), ['name', 'type', 'primary', 'minDecrypt', 'rotateEvery', 'nextRotation', 'versions'])
      }),
    sub(ctx, 'show <name>', 'Show a key and its versions', nameArg, [['$0 key show orders', 'settings and versions']], async (args) => {
      const cp = await connect(ctx, args)
      const key = await cp.get<KeyView>(path(args.name))
      if (args.json) return print(ctx, args, key)
      print(ctx, args, { ...summary(key), ...(key.pairServices ? { pairServices: key.pairServices.join(' ') } : {}), created: time(key.createdAt) })
      ctx.stdout.write('\n')
      print(ctx, args, versionRows(key), ['version', 'state', 'primary', 'created', 'changed', 'destroyAt', 'notAfter', 'origin', 'lastUsed', 'uses30d', 'usedBy'])
    }),
    sub(ctx, 'rotate <name>', 'Make a new primary version; older versions keep decrypting', nameArg,
      [['$0 key rotate orders', 'rotate now (pair keys: keymesh pair rotate A B)']],
      async (args) => {
        const cp = await connect(ctx, args)
        print(ctx, args, await cp.post(path(args.name, 'rotate')))
      }),
    sub(ctx, 'set <name>', 'Change the rotation schedule or the minimum decryption version',
      (y) => nameArg(y)
        .option('rotate-every', { type: 'string', describe: 'Rotate on a schedule, e.g. 30d' })
        .option('rotation', { type: 'boolean', describe: 'Give --no-rotation to stop scheduled rotation' })
        .option('min-decrypt-version', { type: 'number', describe: 'Refuse to decrypt with versions below this one' })
        .conflicts('rotate-every', 'rotation') as Argv<KeyArgs>,
      [['$0 key set orders --rotate-every 90d', 'rotate quarterly'], ['$0 key set orders --no-rotation --min-decrypt-version 3', 'stop rotating; retire v1 and v2']],
      async (args) => {
        if (args.rotation === true) throw cpError('CP_ERR_USAGE', 'use --rotate-every D to schedule rotation, or --no-rotation to stop it')
        const body = {
          ...(args.rotateEvery !== undefined ? { rotationPeriodMs: parseDuration(args.rotateEvery, '--rotate-every') } : {}),
          ...(args.rotation === false ? { noRotation: true } : {}),
          ...(args.minDecryptVersion !== undefined ? { minDecryptVersion: args.minDecryptVersion } : {}),
        }
        if (Object.keys(body).length === 0) throw cpError('CP_ERR_USAGE', 'nothing to change: give --rotate-every, --no-rotation or --min-decrypt-version')
        const cp = await connect(ctx, args)
        const key = await cp.patch<KeyView>(path(args.name), body)
        print(ctx, args, args.json ? key : summary(key))
      }),
    state('enable', 'enabled', 'Enable a version (also undoes a disable)'),
    state('decrypt-only', 'decrypt-only', 'Let a version decrypt but no longer encrypt'),
    state('disable', 'disabled', 'Stop all use of a version (undo with enable)'),
    sub(ctx, 'schedule-destroy <name>', 'Schedule a version\'s destruction after a waiting window (default 7d); refused for a version used recently',
      (y) => versionOpt(y)
        .option('in', { type: 'string', describe: 'Waiting window, e.g. 7d (default: the control plane\'s)' })
        .option('force', { type: 'boolean', describe: 'Schedule it although it was used within the guard window (default 30d); needs --reason' })
        .option('reason', { type: 'string', describe: 'Why, with --force (kept in the audit log)' }) as Argv<KeyArgs>,
      [
        ['$0 key schedule-destroy orders --version 1', 'destroy v1 in 7 days'],
        ['$0 key schedule-destroy orders --version 1 --in 30d', 'in 30 days'],
        ['$0 key schedule-destroy orders --version 1 --force --reason "leaked in INC-42"', 'although it was used lately'],
      ],
      async (args) => {
        if (args.force === true && (args.reason === undefined || args.reason.trim() === '')) throw cpError('CP_ERR_USAGE', '--force needs --reason "…" (it is audited)')
        if (args.force !== true && args.reason !== undefined) throw cpError('CP_ERR_USAGE', '--reason goes with --force')
        const body = {
          state: 'scheduled-destruction',
          ...(args.in !== undefined ? { windowMs: parseDuration(args.in, '--in') } : {}),
          ...(args.force === true ? { force: true, reason: args.reason } : {}),
        }
        const version = versionOf(args)
        const cp = await connect(ctx, args)
        print(ctx, args, await cp.post(path(args.name, 'versions', version, 'state'), body))
      }),
    sub(ctx, 'import-params <name>', 'Get a one-time wrapping key (24 h) for importing key material into NAME',
      (y) => nameArg(y).option('type', { type: 'string', choices: ['aead'], demandOption: true, describe: 'Type of the key to import into' }) as Argv<KeyArgs>,
      [['$0 key import-params orders --type aead --json', 'import id and public key, for key import --import-id … --public-key …']],
      async (args) => {
        const cp = await connect(ctx, args)
        const params = await cp.post<ImportParams>(path(args.name, 'import-params'), { type: args.type })
        print(ctx, args, args.json ? params : { ...params, expiresAt: time(params.expiresAt) })
      }),
    sub(ctx, 'import <name>', 'Import key material (wrapped here to a one-time key of the control plane; never sent in the clear)',
      (y) => nameArg(y)
        .option('type', { type: 'string', choices: ['aead'], demandOption: true, describe: 'Type of the key to import into' })
        .option('material-file', { type: 'string', demandOption: true, describe: 'File holding the raw key material (aead: 32 bytes)' })
        .option('import-id', { type: 'string', describe: 'From key import-params (default: get new params now); give with --public-key' })
        .option('public-key', { type: 'string', describe: 'The import-params\' publicKey (x25519:…), with --import-id' }) as Argv<KeyArgs>,
      [['$0 key import orders --type aead --material-file orders.key', 'a new key, or the next version of orders, from your material']],
      async (args) => {
        if ((args.importId === undefined) !== (args.publicKey === undefined)) throw cpError('CP_ERR_USAGE', '--import-id and --public-key go together')
        const { nodeSuite, parsePublicKey, wrapKeyImport } = await import('../../protocol/src/index.js')
        let material: Uint8Array
        try {
          material = new Uint8Array(await readFile(args.materialFile ?? ''))
        } catch (err) {
          throw cpError('CP_ERR_USAGE', `cannot read ${args.materialFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
        }
        const cp = await connect(ctx, args)
        try {
          const params = args.importId !== undefined
            ? { importId: args.importId, publicKey: args.publicKey ?? '' }
            : await cp.post<ImportParams>(path(args.name, 'import-params'), { type: args.type })
          const wrapped = wrapKeyImport(nodeSuite, { importId: params.importId, publicKey: new Uint8Array(parsePublicKey(params.publicKey)), material })
          const key = await cp.post<KeyView>(path(args.name, 'import'), { type: args.type, importId: params.importId, wrapped: Buffer.from(wrapped).toString('base64') })
          print(ctx, args, args.json ? key : { ...summary(key), imported: `v${key.primaryVersion}` })
        } finally {
          material.fill(0)
        }
      }),
    sub(ctx, 'cancel-destroy <name>', 'Cancel a scheduled destruction before its time', versionOpt,
      [['$0 key cancel-destroy orders --version 1', 'keep v1']],
      async (args) => {
        const version = versionOf(args)
        const cp = await connect(ctx, args)
        print(ctx, args, await cp.post(path(args.name, 'versions', version, 'cancel-destruction')))
      }),
    sub(ctx, 'grant <name>', 'Give a service rights on a key (adds to what it holds)', grantOpts,
      [['$0 key grant orders --service billing --allow encrypt,decrypt', 'billing may seal and open']], grant(false)),
    sub(ctx, 'revoke-grant <name>', 'Take rights on a key away from a service', grantOpts,
      [['$0 key revoke-grant orders --service billing --allow encrypt', 'billing may only open']], grant(true)),
    sub(ctx, 'grants <name>', 'List the services holding rights on a key', nameArg, [['$0 key grants orders', 'who may use orders']], async (args) => {
      const cp = await connect(ctx, args)
      const answer = await cp.get<{ name: string; grants: { service: string; rights: string[] }[] }>(path(args.name, 'grants'))
      print(ctx, args, args.json ? answer : answer.grants, ['service', 'rights'])
    }),
    sub(ctx, 'public <name>', 'Print or save the public key of an x25519, ed25519 or ecdsa-p256 key (the signing keys as PEM)',
      (y) => nameArg(y)
        .option('version', { type: 'number', describe: 'Version (default: the primary)' })
        .option('output', { alias: 'o', type: 'string', describe: 'Write {name, version, publicKey} as JSON to this file (for drop seal --recipient-key)' })
        .option('force', { type: 'boolean', default: false, describe: 'Overwrite the output file' }) as Argv<KeyArgs>,
      [['$0 key public agree', 'print x25519:…'], ['$0 key public agree -o agree.pub', 'save it'], ['$0 key public releases > releases.pem', 'an ed25519 key as PEM, for openssl pkeyutl -verify']],
      async (args) => {
        const version = args.version !== undefined ? versionOf(args) : undefined
        const cp = await connect(ctx, args)
        const answer = await cp.get<{ name: string; version: number; publicKey: string }>(path(args.name, 'public'), { version })
        if (args.output !== undefined) {
          try {
            // The file names its key and version too: a drop sealed to it must record them
            // (cli/drop/recipient-key.ts reads it; the same fields as --json prints).
            const file = { name: answer.name, version: answer.version, publicKey: answer.publicKey }
            await writeFile(args.output, `${JSON.stringify(file)}\n`, { flag: args.force ? 'w' : 'wx' })
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw cpError('CP_ERR_FILE_EXISTS', args.output)
            throw cpError('CP_ERR_USAGE', `cannot write ${args.output}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
          }
        }
        if (args.json) print(ctx, args, answer)
        else if (args.output === undefined) ctx.stdout.write(answer.publicKey.endsWith('\n') ? answer.publicKey : `${answer.publicKey}\n`)
        else ctx.stdout.write(`wrote ${answer.name} v${answer.version} public key to ${args.output}\n`)
      }),
  ]

  return {
    command: 'key <command>',
    describe: 'Create, rotate, retire and grant keys',
    builder: (y: Argv<GlobalArgs>) => {
      let b = y
      for (const c of commands) b = b.command(c as unknown as CommandModule<GlobalArgs, GlobalArgs>)
      return b.demandCommand(1, 'Name a key command; see the list above.')
    },
    handler: () => undefined,
  }
}
