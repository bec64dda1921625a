// `keymesh drop seal|open`: sealed files for a named recipient service (issue 5).
//
//   keymesh drop seal --api HOST:PORT --key NAME --to SERVICE IN -o OUT
//   keymesh drop seal --recipient-key FILE --to SERVICE [--from NAME] IN -o OUT
//   keymesh drop seal --recipient-key FILE --to SERVICE --api HOST:PORT --sender-key FILE IN -o OUT
//   keymesh drop open --api HOST:PORT IN -o OUT
//
// IN and OUT may be '-' for stdin and stdout. The format is protocol/src/drop-format.ts;
// the streaming is cli/drop/seal.ts and open.ts; the KMS calls go through the
// agent's local API (cli/drop/agent-keys.ts). The operator contract: exit 0 on
// success; on any failure a non-zero exit, one line on stderr naming the code and
// the reason, and no OUT file (a file OUT is written beside it and renamed into
// place only once complete; an existing OUT is kept unless --force). With `-o -`,
// plaintext is streamed to stdout as each chunk verifies, so a drop that turns out
// truncated has already written its verified prefix: the exit status says so.
// A progress line is drawn on stderr when stderr is a terminal, never when piped.
import type { Argv, CommandModule } from 'yargs'

import { envName } from '../../agent/src/index.js'
import { AGENT_API_OPTIONS, agentApiTarget, type AgentApiTarget } from '../agent-api.js'
import { cpError } from '../../control-plane/src/index.js'
import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import type { DropHeader } from '../../protocol/src/index.js'
import { isKeyName, isServiceName } from '../../protocol/src/index.js'
import { print, run, type CliContext, type GlobalArgs } from '../context.js'
import { checkOutputFree, fileWriter, isByteSink, openReader, streamWriter, type ByteSink, type ByteSource, type DropReader, type DropWriter } from '../drop/files.js'
import { openDrop } from '../drop/open.js'
import { progressLine, type ProgressTarget } from '../drop/progress.js'
import { readRecipientKey } from '../drop/recipient-key.js'
import { sealDrop, type SealSource } from '../drop/seal.js'

interface DropArgs extends GlobalArgs {
  in: string
  output: string
  api?: string
  apiTokenFile?: string
  stateDir?: string
  key?: string
  to?: string
  from?: string
  recipientKey?: string
  senderKey?: string
  requireVerifiedSender?: boolean
  force: boolean
}

/** What the drop commands read from and write to besides the CLI context (tests inject them). */
export interface DropIo {
  readonly stdin?: ByteSource
  readonly suite?: CryptoSuite
  readonly now?: () => number
}

const usage = (detail: string) => cpError('CP_ERR_USAGE', detail)

function apiOf(ctx: CliContext, args: DropArgs): AgentApiTarget {
  return agentApiTarget(args, ctx.env, usage)
}

function sizeText(n: number): string {
  return n < 1e6 ? `${n} bytes` : `${(n / 1e6).toFixed(1)} MB`
}

function describeHeader(h: DropHeader): Record<string, unknown> {
  return {
    mode: h.mode, from: h.sender === '' ? null : h.sender, to: h.recipient, key: h.key, version: h.keyVersion, chunkSize: h.chunkSize,
    ...(h.senderKey !== undefined && h.senderKey !== '' ? { senderKey: h.senderKey, senderKeyVersion: h.senderKeyVersion } : {}),
  }
}

/** How the text output names the sender: verified, unverified, or absent. */
function senderText(h: DropHeader, verified: boolean | undefined): string {
  if (h.sender === '') return verified === undefined ? '' : 'from an unnamed sender (sender not verified) '
  if (verified === undefined) return `from ${h.sender} `
  return verified ? `from ${h.sender} (verified) ` : `from ${h.sender} (sender not verified: anyone with the recipient's public key can write this name) `
}

export function dropCommand(ctx: CliContext, io: DropIo = {}): CommandModule<GlobalArgs, GlobalArgs> {
  const suite = io.suite ?? nodeSuite
  const stderr = ctx.stderr as ProgressTarget

  /** Opens IN and prepares OUT; OUT is checked before anything costly (a KMS call) happens. */
  async function ends(args: DropArgs, mode: number): Promise<{ reader: DropReader; writer: DropWriter }> {
    // yargs-parser reads a lone '-' as a flag without a name and hands the string
    // positional '' for it; no file is named '', so '' is stdin as well.
    const input = args.in === '' ? '-' : args.in
    if (args.output === '') throw usage('-o needs a file name, or - for stdout')
    const toStdout = args.output === '-'
    if (!toStdout) await checkOutputFree(args.output, args.force)
    else if (!isByteSink(ctx.stdout)) throw usage('stdout cannot take binary output here; give -o FILE')
    const reader = await openReader(input, io.stdin ?? process.stdin)
    try {
      const writer = toStdout ? streamWriter(ctx.stdout as ByteSink) : await fileWriter(args.output, { force: args.force, mode })
      return { reader, writer }
    } catch (err) {
      await reader.close()
      throw err
    }
  }

  /** `senderVerified` is known when opening; when sealing it is undefined. */
  const finished = (args: DropArgs, verb: string, header: DropHeader, bytes: number, senderVerified?: boolean): void => {
    if (args.output === '-') {
      // stdout carries the data; an unverified sender is still said, on stderr.
      if (senderVerified === false) ctx.stderr.write(`keymesh: ${senderText(header, false).trim()}\n`)
      return
    }
    if (args.json) return print(ctx, args, { ...describeHeader(header), ...(senderVerified === undefined ? {} : { senderVerified }), bytes, output: args.output })
    const who = `${senderText(header, senderVerified)}to ${header.recipient}`
    ctx.stdout.write(`${verb} ${sizeText(bytes)} ${who} (${header.mode}, key ${header.key} v${header.keyVersion}): ${args.output}\n`)
  }

  const common = (y: Argv<GlobalArgs>): Argv<DropArgs> =>
    y
      .positional('in', { type: 'string', describe: 'Input file, or - for stdin' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'Output file (written whole or not at all), or - for stdout' })
      .option('api', { type: 'string', describe: `The agent's --api address: HOST:PORT or unix:/path/to.sock (env ${envName('api')})` })
      .options(AGENT_API_OPTIONS)
      .option('force', { type: 'boolean', default: false, describe: 'Replace OUT if it exists' }) as unknown as Argv<DropArgs>

  const seal: CommandModule<GlobalArgs, DropArgs> = {
    command: 'seal <in>',
    describe: 'Seal a file for a recipient service, with a KMS data key (--api, --key) or offline to a public key (--recipient-key)',
    builder: (y) =>
      common(y)
        .option('to', { type: 'string', demandOption: true, describe: 'The recipient service: only its agent can open the drop' })
        .option('key', { type: 'string', describe: 'KMS aead key for the data key (needs generate-data-key; with --api)' })
        .option('recipient-key', { type: 'string', describe: 'Seal offline to this file from `keymesh key public NAME -o FILE` (no agent needed)' })
        .option('from', { type: 'string', describe: 'With --recipient-key offline: a sender name to record; the recipient sees it as not verified (default: none)' })
        .option('sender-key', { type: 'string', describe: 'With --recipient-key and --api: your service\'s own x25519 key, as `keymesh key public NAME -o FILE` writes it (needs encrypt on it); the recipient sees the sender verified' })
        .example('$0 drop seal --api 127.0.0.1:7402 --key partner-files --to globex report.pdf -o report.pdf.drop', 'seal with a KMS data key')
        .example('$0 drop seal --recipient-key globex-inbox.pub --to globex report.pdf -o report.pdf.drop', 'seal offline to an x25519 public key')
        .example('$0 drop seal --recipient-key globex-inbox.pub --api 127.0.0.1:7402 --sender-key billing-drops.pub --to globex report.pdf -o report.pdf.drop', 'seal to a public key, authenticated as your service')
        .example('tar c data | $0 drop seal --api 127.0.0.1:7402 --key partner-files --to globex - -o data.tar.drop', 'seal from stdin'),
    handler: (args) =>
      run(ctx, args, async () => {
        if (!isServiceName(args.to)) throw usage('--to must be a service name (1-63 of a-z, 0-9 and -)')
        let source: SealSource
        if (args.recipientKey !== undefined && args.senderKey !== undefined) {
          if (args.key !== undefined) throw usage('--recipient-key seals to a public key: give it without --key')
          if (args.from !== undefined) throw usage('--sender-key names the sender: it is the agent\'s service, so give no --from')
          const senderKey = await readRecipientKey(args.senderKey)
          source = { mode: 'x25519', recipientKey: await readRecipientKey(args.recipientKey), api: apiOf(ctx, args), senderKey }
        } else if (args.recipientKey !== undefined) {
          if (args.key !== undefined || args.api !== undefined) throw usage('--recipient-key seals offline: give it without --key and --api (or add --sender-key to authenticate through the agent)')
          const sender = args.from ?? ''
          if (sender !== '' && !isServiceName(sender)) throw usage('--from must be a service name (1-63 of a-z, 0-9 and -)')
          source = { mode: 'x25519', recipientKey: await readRecipientKey(args.recipientKey), sender }
        } else {
          if (args.senderKey !== undefined) throw usage('--sender-key goes with --recipient-key')
          if (args.key === undefined) throw usage('name the KMS key with --key NAME (or seal offline with --recipient-key FILE)')
          if (!isKeyName(args.key)) throw usage('--key must be a key name')
          if (args.from !== undefined) throw usage('--from goes with --recipient-key; with --api the sender is the agent\'s service')
          source = { mode: 'kms', api: apiOf(ctx, args), key: args.key }
        }
        const { reader, writer } = await ends(args, 0o644)
        const progress = progressLine(stderr, 'seal', reader.size, io.now)
        const r = await sealDrop({ suite, source, recipient: args.to, reader, writer, progress })
        finished(args, 'sealed', r.header, r.bytes)
      }),
  }

  const open: CommandModule<GlobalArgs, DropArgs> = {
    command: 'open <in>',
    describe: 'Open a drop sealed for this agent\'s service; OUT appears only once every chunk verified',
    builder: (y) =>
      common(y)
        .option('require-verified-sender', { type: 'boolean', default: false, describe: 'Refuse a drop whose sender is only named, not proven (an offline --from): checked before any byte is written' })
        .example('$0 drop open --api 127.0.0.1:7403 report.pdf.drop -o report.pdf', 'open a drop')
        .example('$0 drop open --api 127.0.0.1:7403 data.tar.drop -o - | tar x', 'stream the plaintext out'),
    handler: (args) =>
      run(ctx, args, async () => {
        const api = apiOf(ctx, args)
        const { reader, writer } = await ends(args, 0o600)
        const progress = progressLine(stderr, 'open', reader.size, io.now)
        const r = await openDrop({ suite, api, reader, writer, progress, requireVerifiedSender: args.requireVerifiedSender === true })
        finished(args, 'opened', r.header, r.bytes, r.senderVerified)
      }),
  }

  return {
    command: 'drop <command>',
    describe: 'Seal and open files for a partner service (drops)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(seal as unknown as CommandModule<GlobalArgs, GlobalArgs>)
        .command(open as unknown as CommandModule<GlobalArgs, GlobalArgs>)
        .demandCommand(1, 'Name a drop command: seal or open.'),
    handler: () => undefined,
  }
}
