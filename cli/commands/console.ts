// `keymesh console link`: the operator console's address and a one-time sign-in link
// for the token in use (POST /ui/api/links). The link signs in once, within its
// lifetime (default 15 min, at most 1 h), to a session of the token's role; the
// control plane keeps only its hash. The token itself never goes into the link.
import type { Argv, CommandModule } from 'yargs'

import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import { humanTime } from '../output.js'

interface LinkArgs extends GlobalArgs { ttl?: string }

function linkCommand(ctx: CliContext): CommandModule<GlobalArgs, LinkArgs> {
  return {
    command: 'link',
    describe: 'Print the console\'s address and a one-time sign-in link for the token in use',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('ttl', { type: 'string', describe: 'How long the link may be used, 1m to 1h (default 15m)' })
        .example('$0 console link', 'open the printed link in a browser to sign in once')
        .example('$0 console link --ttl 5m --json', 'for scripts') as unknown as Argv<LinkArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const ttlMs = args.ttl === undefined ? undefined : parseDuration(args.ttl, '--ttl')
        const client = await connect(ctx, args)
        const link = await client.post<{ path: string; expiresAt: number }>('/ui/api/links', ttlMs === undefined ? {} : { ttlMs })
        const out = { console: `${client.baseUrl}/ui/`, link: `${client.baseUrl}${link.path}`, expiresAt: link.expiresAt }
        if (args.json) return print(ctx, args, out)
        ctx.stdout.write(`console: ${out.console}\nsign in once, until ${humanTime(out.expiresAt)}: ${out.link}\n`)
      }),
  }
}

export function consoleCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'console <command>',
    describe: 'The operator console in the browser (served at /ui/)',
    builder: (y: Argv<GlobalArgs>) => y.command(linkCommand(ctx)).demandCommand(1, 'Name a console command: link.'),
    handler: () => undefined,
  }
}
