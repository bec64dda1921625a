// `keymesh token create|list|revoke`: operator bearer tokens (admin only).
// A new token is printed exactly once; keymesh keeps only its hash.
import type { Argv, CommandModule } from 'yargs'

import { OPERATOR_ROLES } from '../../control-plane/src/index.js'
import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { humanTime, type Column } from '../output.js'

interface CreateArgs extends GlobalArgs { name: string; role: string; ttl?: string }
interface ListArgs extends GlobalArgs { all?: boolean }
interface RevokeArgs extends GlobalArgs { id: string }

interface TokenView {
  id: string
  name: string
  role: string
  status: string
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
}

const iso = humanTime

const TOKEN_COLUMNS: readonly Column[] = ['id', 'name', 'role', 'status', { key: 'created', header: 'CREATED' }, { key: 'expires', header: 'EXPIRES' }]

function row(t: TokenView): Record<string, unknown> {
  return { id: t.id, name: t.name, role: t.role, status: t.status, created: iso(t.createdAt), expires: iso(t.expiresAt) ?? 'never' }
}

function createCommand(ctx: CliContext): CommandModule<GlobalArgs, CreateArgs> {
  return {
    command: 'create',
    describe: 'Create an operator token and print it (the only time it is shown)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('name', { type: 'string', demandOption: true, describe: 'A label for the token (who or what holds it)' })
        .option('role', { type: 'string', choices: OPERATOR_ROLES, demandOption: true, describe: 'admin: everything; operator: all but tokens; auditor: read-only and the audit log' })
        .option('ttl', { type: 'string', describe: 'Lifetime, e.g. 12h, 90d (default: does not expire)' })
        .example('$0 token create --name ci --role operator --ttl 90d', 'a token for CI that expires in 90 days')
        .example('$0 token create --name alice --role auditor --json | jq -r .token > alice.token', 'keep the token in a file') as unknown as Argv<CreateArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const ttlMs = args.ttl === undefined ? undefined : parseDuration(args.ttl, '--ttl')
        const client = await connect(ctx, args)
        const created = await client.post<{ id: string; name: string; role: string; token: string; expiresAt: number | null }>('/v1/tokens', {
          name: args.name,
          role: args.role,
          ...(ttlMs !== undefined ? { ttlMs } : {}),
        })
        if (args.json) return print(ctx, args, created)
        print(ctx, args, { id: created.id, name: created.name, role: created.role, expires: iso(created.expiresAt) ?? 'never', token: created.token })
        ctx.stderr.write('keymesh: store this token now; it is not shown again\n')
      }),
  }
}

function listCommand(ctx: CliContext): CommandModule<GlobalArgs, ListArgs> {
  return {
    command: 'list',
    describe: 'List operator tokens (never the tokens themselves)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('all', { type: 'boolean', describe: 'Include revoked tokens' })
        .example('$0 token list', 'active and expired tokens')
        .example('$0 token list --all --json', 'every token, for scripts') as unknown as Argv<ListArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const answer = await client.get<{ tokens: TokenView[] }>('/v1/tokens', args.all ? { includeRevoked: true } : {})
        if (args.json) return print(ctx, args, answer)
        print(ctx, args, answer.tokens.map(row), TOKEN_COLUMNS)
      }),
  }
}

function revokeCommand(ctx: CliContext): CommandModule<GlobalArgs, RevokeArgs> {
  return {
    command: 'revoke <id>',
    describe: 'Revoke an operator token at once (the last active admin token cannot be revoked)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('id', { type: 'string', demandOption: true, describe: 'Token id (tok_…), as `token list` shows it' })
        .example('$0 token revoke tok_abcdefghijklmnopqrstuvwxya', 'revoke one token') as unknown as Argv<RevokeArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const client = await connect(ctx, args)
        const revoked = await client.post<TokenView>(`/v1/tokens/${encodeURIComponent(args.id)}/revoke`)
        if (args.json) return print(ctx, args, revoked)
        ctx.stdout.write(`revoked ${revoked.role} token ${revoked.id} (${revoked.name})\n`)
      }),
  }
}

export function tokenCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'token <command>',
    describe: 'Manage operator tokens (admin only)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(createCommand(ctx))
        .command(listCommand(ctx))
        .command(revokeCommand(ctx))
        .demandCommand(1, 'Name a token command: create, list or revoke.'),
    handler: () => undefined,
  }
}
