// `keymesh agents list [--service S] [--all]` and `keymesh agents revoke ID`.
// Revoking closes the agent's session at once, refuses its reconnects, and rotates
// the pair keys of its service with no grace period.
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { humanTime, type Column } from '../output.js'

interface ListArgs extends GlobalArgs { service?: string; all?: boolean }
interface RevokeArgs extends GlobalArgs { id: string }

interface AgentView {
  id: string
  service: string
  staticKey: string
  enrolledAt: number
  lastSeenAt: number | null
  revokedAt: number | null
  endpoint: string | null
  connected: boolean
}

interface Revocation {
  id: string
  service: string
  revokedAt: number
  rotatedPairs: string[]
}

const iso = humanTime

const COLUMNS: readonly Column[] = ['id', 'service', 'status', 'endpoint', { key: 'lastSeen', header: 'LAST SEEN' }, { key: 'staticKey', header: 'STATIC KEY' }]

function row(a: AgentView): Record<string, unknown> {
  const status = a.revokedAt !== null ? 'revoked' : a.connected ? 'connected' : 'offline'
  return { id: a.id, service: a.service, status, endpoint: a.endpoint, lastSeen: iso(a.lastSeenAt), staticKey: a.staticKey }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List enrolled agents and whether they are connected',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', describe: 'Only agents of this service' })
        .option('all', { type: 'boolean', describe: 'Include revoked agents' })
        .example('$0 agents list', 'every agent that is not revoked')
        .example('$0 agents list --service orders --all --json', 'orders agents, revoked ones too, for scripts') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const agents = await client.get<AgentView[]>('/v1/agents', {
          ...(args.service !== undefined ? { service: args.service } : {}),
          ...(args.all ? { includeRevoked: true } : {}),
        })
        if (args.json) return print(ctx, args, agents)
        print(ctx, args, agents.map(row), COLUMNS)
      }),
  }
}

function revokeCommand(ctx: CliContext): CommandModule<GlobalArgs, RevokeArgs> {
  return {
    command: 'revoke <id>',
    describe: 'Revoke an agent: close its session, refuse it from now on, rotate its service\'s pair keys',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('id', { type: 'string', demandOption: true, describe: 'Agent id (agt_…), as `agents list` shows it' })
        .example('$0 agents revoke agt_abcdefghijklmnopqrstuvwxya', 'revoke one agent') as unknown as Argv<RevokeArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const revoked = await client.post<Revocation>(`/v1/agents/${encodeURIComponent(args.id)}/revoke`)
        if (args.json) return print(ctx, args, revoked)
        const rotated = revoked.rotatedPairs.length === 0 ? 'no pair keys to rotate' : `rotated ${revoked.rotatedPairs.join(', ')}`
        ctx.stdout.write(`revoked agent ${revoked.id} of ${revoked.service}; ${rotated}\n`)
      }),
  }
}

export function agentsCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'agents <command>',
    describe: 'List and revoke enrolled agents',
    builder: (y: Argv<GlobalArgs>) =>
      y.command(listCommand(ctx)).command(revokeCommand(ctx)).demandCommand(1, 'Name an agents command: list or revoke.'),
    handler: () => undefined,
  }
}
