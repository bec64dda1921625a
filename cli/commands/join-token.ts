// `keymesh join-token create --service NAME [--ttl 1h]`: a one-time token that lets
// one agent of NAME enrol. The token is printed once; keymesh keeps only its hash.
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { localTime } from '../output.js'

interface CreateArgs extends GlobalArgs { service: string; ttl?: string }

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

export function joinTokenCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'join-token <command>',
    describe: 'Create one-time tokens that let agents enrol',
    builder: (y: Argv<GlobalArgs>) => y.command(createCommand(ctx)).demandCommand(1, 'Name a join-token command: create.'),
    handler: () => undefined,
  }
}
