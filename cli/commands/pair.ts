// `keymesh pair list|rotate`: the per-pair channel keys that intentions create.
// Only metadata is shown; pair key material goes to the two services' agents alone.
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { humanTime, type Column } from '../output.js'

interface ListArgs extends GlobalArgs { service?: string; all?: boolean }
interface RotateArgs extends GlobalArgs { a: string; b: string }

interface PairView {
  pairId: string
  services: [string, string]
  primaryVersion: number
  state: 'live' | 'destroyed'
  allows: Record<string, boolean>
  versions: { version: number; state: string; notAfter: number | null }[]
}
interface RotateAnswer { pairId: string; version: number; previousVersion: number; previousNotAfter: number | null }

const COLUMNS: readonly Column[] = [{ key: 'pairId', header: 'PAIR' }, 'primary', 'allows', 'versions']
const iso = humanTime

function row(p: PairView): Record<string, unknown> {
  const allows = Object.entries(p.allows).filter(([, on]) => on).map(([dir]) => dir)
  return {
    pairId: p.pairId,
    primary: p.state === 'live' ? `v${p.primaryVersion}` : 'none (destroyed)',
    allows: allows.length > 0 ? allows.join(' ') : 'none',
    versions: p.versions
      .filter((v) => v.state !== 'destroyed')
      .map((v) => (v.notAfter === null ? `v${v.version} ${v.state}` : `v${v.version} ${v.state} until ${iso(v.notAfter)}`))
      .join('; '),
  }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List live pair keys: their directions and live versions (never material)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', describe: 'Only pairs with this service on either side' })
        .option('all', { type: 'boolean', describe: 'Also pair keys no intention needs any more (destroyed, metadata only)' })
        .example('$0 pair list', 'every live pair key')
        .example('$0 pair list --all --json', 'with every version, destroyed pairs and versions included') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const pairs = await client.get<PairView[]>('/v1/pairs', { service: args.service, all: args.all === true ? true : undefined })
        if (args.json) return print(ctx, args, pairs)
        print(ctx, args, pairs.map(row), COLUMNS)
      }),
  }
}

function rotateCommand(ctx: CliContext): CommandModule<GlobalArgs, RotateArgs> {
  return {
    command: 'rotate <a> <b>',
    describe: 'Rotate the pair key of services A and B now; the previous version is accepted until its grace ends',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('a', { type: 'string', demandOption: true, describe: 'One service of the pair' })
        .positional('b', { type: 'string', demandOption: true, describe: 'The other (order does not matter)' })
        .example('$0 pair rotate web api', 'new version for the web/api pair')
        .example('$0 pair rotate web api --json', '{"pairId","version","previousVersion","previousNotAfter"}') as unknown as Argv<RotateArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const answer = await client.post<RotateAnswer>(`/v1/pairs/${encodeURIComponent(args.a)}/${encodeURIComponent(args.b)}/rotate`)
        if (args.json) return print(ctx, args, answer)
        const until = answer.previousNotAfter === null ? '' : `, accepted until ${iso(answer.previousNotAfter)}`
        ctx.stdout.write(`rotated ${answer.pairId} to v${answer.version} (v${answer.previousVersion} decrypt-only${until})\n`)
      }),
  }
}

export function pairCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'pair <command>',
    describe: 'List and rotate pair keys (one per pair of services with an intention)',
    builder: (y: Argv<GlobalArgs>) =>
      y.command(listCommand(ctx)).command(rotateCommand(ctx)).demandCommand(1, 'Name a pair command: list or rotate.'),
    handler: () => undefined,
  }
}
