// `keymesh join-token create --service NAME [--ttl 1h]`: a one-time token that lets
// one agent of NAME enrol. The token is printed once; keymesh keeps only its hash.
// `join-token list` shows tokens (never the token), `join-token revoke ID` revokes an
// unused one (audited).
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { localTime } from '../output.js'

interface CreateArgs extends GlobalArgs { service: string; ttl?: string }
interface ListArgs extends GlobalArgs { service?: string }
interface RevokeArgs extends GlobalArgs { id: string }

interface JoinTokenView {
  id: string
  service: string
  createdAt: number
  expiresAt: number
  usedAt: number | null
  usedByAgent: string | null
  revokedAt: number | null
}

const iso = (ms: number): string => new Date(ms).toISOString()
const COLUMNS = ['id', 'service', 'expires', 'status'] as const

function status(t: JoinTokenView): string {
  if (t.revokedAt !== null) return `revoked ${iso(t.revokedAt)}`
  if (t.usedAt !== null) return `used ${iso(t.usedAt)} by ${t.usedByAgent ?? '?'}`
  return 'unused'
}

interface CreatedJoinToken {
  id: string
  token: string
  service: string
  expiresAt: number
}

function createCommand(ctx: CliContext): CommandModule<GlobalArgs, CreateArgs> {
  return {
    command: 'create',
    describe: 'Create a one-time join token for an agent of a service (shown only now)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', demandOption: true, describe: 'The service the enrolling agent will belong to' })
        .option('ttl', { type: 'string', describe: 'How long the token stays usable, e.g. 15m, 1h, 7d (default: the control plane\'s, 1h)' })
        .example('$0 join-token create --service orders', 'a token for one orders agent, valid for an hour')
        .example('$0 join-token create --service orders --ttl 15m --json | jq -r .token > orders.join', 'keep it in a file for the agent') as unknown as Argv<CreateArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const ttlMs = args.ttl === undefined ? undefined : parseDuration(args.ttl, '--ttl')
        const client = await connect(ctx, args)
        const created = await client.post<CreatedJoinToken>('/v1/join-tokens', { service: args.service, ...(ttlMs !== undefined ? { ttlMs } : {}) })
        if (args.json) return print(ctx, args, created)
        print(ctx, args, { id: created.id, service: created.service, expires: localTime(created.expiresAt), token: created.token })
        ctx.stderr.write('keymesh: give this token to one agent now; it is not shown again and works once\n')
      }),
  }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List join tokens not yet expired: service, expiry, used or revoked (never the token)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('service', { type: 'string', describe: 'Only tokens of this service' })
        .example('$0 join-token list', 'every token the control plane still holds')
        .example('$0 join-token list --service orders --json', 'as JSON') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const rows = await client.get<JoinTokenView[]>('/v1/join-tokens', { service: args.service })
        if (args.json) return print(ctx, args, rows)
        print(ctx, args, rows.map((t) => ({ id: t.id, service: t.service, expires: iso(t.expiresAt), status: status(t) })), COLUMNS)
      }),
  }
}

function revokeCommand(ctx: CliContext): CommandModule<GlobalArgs, RevokeArgs> {
  return {
    command: 'revoke <id>',
    describe: 'Revoke an unused join token: it enrols nothing from now on (audited)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('id', { type: 'string', demandOption: true, describe: 'The token id (tok_…), as join-token list shows it' })
        .example('$0 join-token revoke tok_01hx…', 'the token leaked before use') as unknown as Argv<RevokeArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const revoked = await client.post<JoinTokenView>(`/v1/join-tokens/${encodeURIComponent(args.id)}/revoke`)
        if (args.json) return print(ctx, args, revoked)
        ctx.stdout.write(`revoked join token ${revoked.id} (${revoked.service})\n`)
      }),
  }
}

export function joinTokenCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'join-token <command>',
    describe: 'Create, list and revoke one-time tokens that let agents enrol',
    builder: (y: Argv<GlobalArgs>) =>
      y.command(createCommand(ctx)).command(listCommand(ctx)).command(revokeCommand(ctx)).demandCommand(1, 'Name a join-token command: create, list or revoke.'),
    handler: () => undefined,
  }
}
