// `keymesh intention allow|deny|remove|list`: which service may open connections to
// which. Rules are allow or deny, `*` standing for any service on either side; a deny
// wins over every allow. A pair key exists while the rules allow either direction
// (control-plane/src/services/intentions.ts). Removing an allow keeps it working
// through a grace (default 1 h) unless --now; on a terminal, --now and deny ask first,
// after showing what would change.
import type { Argv, CommandModule } from 'yargs'

import type { ControlPlaneClient } from '../client.js'
import { connect, print, printDryRun, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { localTime, type Column } from '../output.js'

interface PairArgs extends GlobalArgs { src: string; dst: string; yes?: boolean }
interface RemoveArgs extends PairArgs { now?: boolean; grace?: string }
interface ListArgs extends GlobalArgs { service?: string }

interface PairEffect { pairId: string; after: Record<string, boolean> | null; change: string }
interface Effect { pairs: PairEffect[]; services: string[]; agents: number }
interface AllowAnswer { src: string; dst: string; created: boolean; restored: boolean; deniedBy: string | null; pairId: string | null; pairVersion: number | null; impact: Effect }
interface DenyAnswer { src: string; dst: string; created: boolean; replacedAllow: boolean; impact: Effect }
interface RemoveAnswer { src: string; dst: string; effect: 'allow' | 'deny'; removed: boolean; removesAt: number | null }
interface IntentionView { src: string; dst: string; effect: string; createdAt: number; removesAt: number | null }

const COLUMNS: readonly Column[] = ['effect', 'src', 'dst', { key: 'created', header: 'CREATED' }, { key: 'removes', header: 'REMOVED AT' }]
const path = (src: string, dst: string): string => `/v1/intentions/${encodeURIComponent(src)}/${encodeURIComponent(dst)}`
const iso = (ms: number): string => new Date(ms).toISOString()

const positionals = <T>(y: Argv<GlobalArgs>): Argv<T> =>
  y
    .positional('src', { type: 'string', demandOption: true, describe: 'The service that opens connections, or * for any' })
    .positional('dst', { type: 'string', demandOption: true, describe: 'The service it connects to, or * for any' })
    .option('yes', { type: 'boolean', describe: 'Do not ask on a terminal' }) as unknown as Argv<T>

/** One line on the pairs a change touched. */
function pairsLine(effect: Effect): string {
  const changed = effect.pairs.filter((p) => p.change !== 'kept')
  if (changed.length === 0) return ''
  return `; pair keys ${changed.map((p) => `${p.pairId} ${p.change}`).join(', ')}`
}

/**
 * On a terminal, and unless --yes or --dry-run: shows what `send` would change (it is
 * sent once as a dry run) and asks. False when the answer is no.
 */
async function confirmed(ctx: CliContext, args: PairArgs, client: ControlPlaneClient, what: string, send: (c: ControlPlaneClient) => Promise<unknown>): Promise<boolean> {
  if (ctx.confirm === undefined || args.yes === true || args.dryRun === true) return true
  try {
    await send(client.withDryRun(true))
  } catch (err) {
    const report = (err as { report?: unknown }).report
    if (report === undefined) throw err
    printDryRun(ctx, { ...args, json: false }, report as Parameters<typeof printDryRun>[2])
  }
  if (await ctx.confirm(`${what}?`)) return true
  ctx.stderr.write('keymesh: not confirmed; nothing changed\n')
  return false
}

function allowCommand(ctx: CliContext): CommandModule<GlobalArgs, PairArgs> {
  return {
    command: 'allow <src> <dst>',
    describe: 'Let service SRC open connections to service DST (creates their pair key if needed); * is any service',
    builder: (y) =>
      positionals<PairArgs>(
        y
          .example('$0 intention allow web api', 'web may connect to api')
          .example("$0 intention allow web '*'", 'web may connect to every service (pair keys for each known service)')
          .example('$0 intention allow web api --dry-run', 'show what would change'),
      ),
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const answer = await client.post<AllowAnswer>('/v1/intentions', { src: args.src, dst: args.dst })
        if (args.json) return print(ctx, args, answer)
        const what = answer.created ? 'allowed' : answer.restored ? 'kept (removal cancelled):' : 'already allowed:'
        const pair = answer.pairId === null ? '' : ` (pair ${answer.pairId}, key version ${answer.pairVersion})`
        const blocked = answer.deniedBy === null ? '' : `; but ${answer.deniedBy}`
        ctx.stdout.write(`${what} ${answer.src} -> ${answer.dst}${pair}${blocked}${answer.pairId === null ? pairsLine(answer.impact) : ''}\n`)
      }),
  }
}

function denyCommand(ctx: CliContext): CommandModule<GlobalArgs, PairArgs> {
  return {
    command: 'deny <src> <dst>',
    describe: 'Forbid SRC -> DST, at once; a deny wins over every allow, * included. Pair keys no rule needs are destroyed',
    builder: (y) =>
      positionals<PairArgs>(
        y
          .example('$0 intention deny web db', 'web may never connect to db, whatever allows it')
          .example("$0 intention deny '*' db --dry-run", 'which pairs a deny of everything to db would cut'),
      ),
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const send = (c: ControlPlaneClient): Promise<DenyAnswer> => c.post<DenyAnswer>('/v1/intentions/deny', { src: args.src, dst: args.dst })
        if (!(await confirmed(ctx, args, client, `deny ${args.src} -> ${args.dst} now`, send))) return 1
        const answer = await send(client)
        if (args.json) return print(ctx, args, answer)
        const what = answer.created ? 'denied' : answer.replacedAllow ? 'denied (replacing its allow)' : 'already denied:'
        ctx.stdout.write(`${what} ${answer.src} -> ${answer.dst}${pairsLine(answer.impact)}\n`)
      }),
  }
}

function removeCommand(ctx: CliContext): CommandModule<GlobalArgs, RemoveArgs> {
  return {
    command: 'remove <src> <dst>',
    describe: 'Remove the rule SRC -> DST. An allow keeps working through a grace (default 1 h), then its pair key goes; a deny goes at once',
    builder: (y) =>
      positionals<RemoveArgs>(
        y
          .option('grace', { type: 'string', describe: 'How long the allow keeps working, e.g. 30m, 2h (default: the pair grace, 1 h)' })
          .option('now', { type: 'boolean', describe: 'Remove at once: live tunnels of pairs no rule allows are cut' })
          .conflicts('now', 'grace')
          .example('$0 intention remove web api', 'web -> api ends in 1 h; live tunnels keep working until then')
          .example('$0 intention remove web api --now', 'ends now (asks first on a terminal)'),
      ),
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const query = args.now === true ? '?now=true' : args.grace !== undefined ? `?graceMs=${parseDuration(args.grace, '--grace')}` : ''
        const send = (c: ControlPlaneClient): Promise<RemoveAnswer> => c.delete<RemoveAnswer>(`${path(args.src, args.dst)}${query}`)
        if (args.now === true && !(await confirmed(ctx, args, client, `remove ${args.src} -> ${args.dst} now, cutting its live tunnels`, send))) return 1
        const answer = await send(client)
        if (args.json) return print(ctx, args, answer)
        const rule = `${answer.effect} ${answer.src} -> ${answer.dst}`
        ctx.stdout.write(answer.removed ? `removed ${rule}\n` : `${rule} works until ${localTime(answer.removesAt as number)}, then is removed (allow it again to keep it)\n`)
      }),
  }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List intentions: allow and deny rules, and when a removed allow ends',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', describe: 'Only rules that concern this service (wildcards included)' })
        .example('$0 intention list', 'every rule')
        .example('$0 intention list --service api --json', 'those of one service, as JSON') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const rows = await client.get<IntentionView[]>('/v1/intentions', { service: args.service })
        if (args.json) return print(ctx, args, rows)
        print(ctx, args, rows.map((i) => ({ effect: i.effect, src: i.src, dst: i.dst, created: localTime(i.createdAt), removes: i.removesAt === null ? '-' : localTime(i.removesAt) })), COLUMNS)
      }),
  }
}

export function intentionCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'intention <command>',
    describe: 'Allow, deny, remove and list service-to-service intentions',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(allowCommand(ctx))
        .command(denyCommand(ctx))
        .command(removeCommand(ctx))
        .command(listCommand(ctx))
        .demandCommand(1, 'Name an intention command: allow, deny, remove or list.'),
    handler: () => undefined,
  }
}
