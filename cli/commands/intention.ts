// `keymesh intention allow|deny|list`: which service may open connections to which.
// Allowing the first intention between two services creates their pair key; denying
// the last one destroys it (see control-plane/src/services/pairs.ts).
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { localTime, type Column } from '../output.js'

interface PairArgs extends GlobalArgs { src: string; dst: string }
interface ListArgs extends GlobalArgs { service?: string }

interface AllowAnswer { src: string; dst: string; createdAt: number; created: boolean; pairId: string; pairVersion: number }
interface DenyAnswer { src: string; dst: string; pairId: string; pairRetired: boolean; destroyedVersions: number[] }
interface IntentionView { src: string; dst: string; createdAt: number }

const COLUMNS: readonly Column[] = ['src', 'dst', { key: 'created', header: 'CREATED' }]
const path = (src: string, dst: string): string => `/v1/intentions/${encodeURIComponent(src)}/${encodeURIComponent(dst)}`

const positionals = <T>(y: Argv<GlobalArgs>): Argv<T> =>
  y
    .positional('src', { type: 'string', demandOption: true, describe: 'The service that opens connections' })
    .positional('dst', { type: 'string', demandOption: true, describe: 'The service it connects to' }) as unknown as Argv<T>

function allowCommand(ctx: CliContext): CommandModule<GlobalArgs, PairArgs> {
  return {
    command: 'allow <src> <dst>',
    describe: 'Let service SRC open connections to service DST (creates their pair key if needed)',
    builder: (y) =>
      positionals<PairArgs>(
        y.example('$0 intention allow web api', 'web may connect to api').example('$0 intention allow web api --json', 'the result as JSON'),
      ),
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const answer = await client.post<AllowAnswer>('/v1/intentions', { src: args.src, dst: args.dst })
        if (args.json) return print(ctx, args, answer)
        const what = answer.created ? 'allowed' : 'already allowed:'
        ctx.stdout.write(`${what} ${answer.src} -> ${answer.dst} (pair ${answer.pairId}, key version ${answer.pairVersion})\n`)
      }),
  }
}

function denyCommand(ctx: CliContext): CommandModule<GlobalArgs, PairArgs> {
  return {
    command: 'deny <src> <dst>',
    describe: 'Remove the intention SRC -> DST; with none left either way, the pair key is destroyed',
    builder: (y) => positionals<PairArgs>(y.example('$0 intention deny web api', 'web may no longer connect to api')),
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const answer = await client.delete<DenyAnswer>(path(args.src, args.dst))
        if (args.json) return print(ctx, args, answer)
        const tail = answer.pairRetired
          ? `no intention left; pair key ${answer.pairId} destroyed`
          : `pair key ${answer.pairId} kept for ${answer.dst} -> ${answer.src}`
        ctx.stdout.write(`denied ${answer.src} -> ${answer.dst}; ${tail}\n`)
      }),
  }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List intentions',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', describe: 'Only intentions with this service on either side' })
        .example('$0 intention list', 'every intention')
        .example('$0 intention list --service api --json', 'those of one service, as JSON') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const rows = await client.get<IntentionView[]>('/v1/intentions', { service: args.service })
        if (args.json) return print(ctx, args, rows)
        print(ctx, args, rows.map((i) => ({ src: i.src, dst: i.dst, created: localTime(i.createdAt) })), COLUMNS)
      }),
  }
}

export function intentionCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'intention <command>',
    describe: 'Allow, deny and list service-to-service intentions',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(allowCommand(ctx))
        .command(denyCommand(ctx))
        .command(listCommand(ctx))
        .demandCommand(1, 'Name an intention command: allow, deny or list.'),
    handler: () => undefined,
  }
}
