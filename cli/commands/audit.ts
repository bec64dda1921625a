// `keymesh audit tail|query|export|verify`: read, export and check the audit log.
// `verify --data-dir DIR` works offline: it opens the store read-only, needs no
// master key and no running control plane, and exits 3 when the chain is broken
// (1 when it could not check at all), so scripts can tell the two apart.
import { randomBytes } from 'node:crypto'
import { open, rename, rm, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Argv, CommandModule } from 'yargs'

import { verifyView } from '../../control-plane/src/index.js'
import { createAuditLog } from '../../control-plane/src/index.js'
import { cpError } from '../../control-plane/src/index.js'
import { fsyncDir } from '../../platform/src/index.js'
import { AUDIT_OUTCOMES } from '../../control-plane/src/index.js'
import { openSqliteStore } from '../../control-plane/src/index.js'
import { ControlPlaneError, readTokenFile, resolveClientConfig } from '../client.js'
import { connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { parseDuration } from '../duration.js'
import type { Column } from '../output.js'

/** Exit code of `audit verify` when the chain is broken (an error that stopped the check is 1). */
export const EXIT_AUDIT_BROKEN = 3

interface TailArgs extends GlobalArgs { n: number }
interface QueryArgs extends GlobalArgs {
  since?: string; until?: string; actor?: string; action?: string; target?: string; outcome?: string; limit?: number
}
interface ExportArgs extends GlobalArgs { format: string; output?: string; since?: string; until?: string; actor?: string; action?: string; target?: string; outcome?: string }
interface VerifyArgs extends GlobalArgs { dataDir?: string }

interface Entry { seq: number; at: number; actor: string; action: string; target: string; outcome: string; reason: string }

const entries = (n: unknown): string => `${String(n)} ${n === 1 ? 'entry' : 'entries'}`

const ENTRY_COLUMNS: readonly Column[] = ['seq', 'time', 'actor', 'action', 'target', 'outcome', 'reason']
const row = (e: Entry): Record<string, unknown> => ({ ...e, time: new Date(e.at).toISOString() })

/** `--since`/`--until`: an ISO 8601 time, or a duration meaning that long ago (`1h`, `7d`). */
export function parseTimeFlag(text: string, flag: string, now: number = Date.now()): number {
  if (/^\d+(ms|s|m|h|d|w)$/.test(text.trim())) return now - parseDuration(text, flag)
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN
  if (!Number.isFinite(ms)) throw cpError('CP_ERR_USAGE', `${flag} must be an ISO 8601 time (2026-01-31T12:00:00Z) or a duration ago (90m, 7d)`)
  return ms
}

function filterQuery(a: Omit<QueryArgs, 'limit'>): Record<string, string | undefined> {
  return {
    from: a.since === undefined ? undefined : String(parseTimeFlag(a.since, '--since')),
    to: a.until === undefined ? undefined : String(parseTimeFlag(a.until, '--until')),
    actor: a.actor,
    action: a.action,
    target: a.target,
    outcome: a.outcome,
  }
}

function filterOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('since', { type: 'string', describe: 'Entries at or after this time: ISO 8601, or a duration ago (1h, 7d)' })
    .option('until', { type: 'string', describe: 'Entries before this time: ISO 8601, or a duration ago' })
    .option('actor', { type: 'string', describe: 'Exact actor, e.g. operator:tok_…, agent:agt_…, system:scheduler' })
    .option('action', { type: 'string', describe: 'Exact action, e.g. key.rotate, token.create' })
    .option('target', { type: 'string', describe: 'Exact target, e.g. key:orders, token:tok_…' })
    .option('outcome', { type: 'string', choices: AUDIT_OUTCOMES, describe: 'ok, error, allow or deny' })
}

/**
 * Streams GET /v1/audit/export to stdout or, with `output`, to a temporary file
 * beside it that is fsync'd and renamed into place only once the answer ended
 * cleanly: a cut-off export (CP_ERR_AUDIT_INCOMPLETE) leaves no file behind. The
 * shared JSON client buffers whole answers, hence this small streaming fetch.
 */
async function exportAudit(ctx: CliContext, args: GlobalArgs, query: Record<string, string | undefined>, output: string | undefined): Promise<{ file: string; entries: number }> {
  const config = resolveClientConfig({ cp: args.cp, tokenFile: args.tokenFile }, ctx.env)
  if (config.tokenFile === undefined) throw cpError('CP_ERR_USAGE', 'name a token file with --token-file F or KEYMESH_TOKEN_FILE')
  const token = await readTokenFile(config.tokenFile)
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v)
  const qs = params.toString()
  let res: Response
  try {
    res = await fetch(`${config.baseUrl}/v1/audit/export${qs === '' ? '' : `?${qs}`}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' },
      redirect: 'manual',
    })
  } catch (err) {
    throw cpError('CP_ERR_UNREACHABLE', `cannot reach the control plane at ${config.baseUrl}`, { cause: err })
  }
  if (!res.ok || res.body === null) throw await answerError(res)
  const tmp = output === undefined ? undefined : join(dirname(output), `.${basename(output)}.${randomBytes(6).toString('hex')}.tmp`)
  let file: FileHandle | undefined
  try {
    file = tmp === undefined ? undefined : await open(tmp, 'wx', 0o600)
  } catch (err) {
    await res.body.cancel()
    throw cpError('CP_ERR_OUTPUT', `cannot write beside ${output ?? '-'} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
  }
  let entries = 0
  let last = ''
  try {
    const decoder = new TextDecoder('utf-8', { fatal: true })
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk, { stream: true })
        if (text === '') continue
        for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) entries++
        last = text
        if (file) await file.write(text)
        else ctx.stdout.write(text)
      }
      decoder.decode()
    } catch (err) {
      throw cpError('CP_ERR_AUDIT_INCOMPLETE', `after ${entries} entries`, { cause: err })
    }
    if (last !== '' && !last.endsWith('\n')) throw cpError('CP_ERR_AUDIT_INCOMPLETE', 'the last line is cut off')
    if (file && tmp !== undefined && output !== undefined) {
      await file.sync()
      await file.close()
      await rename(tmp, output)
      fsyncDir(dirname(output))
    }
  } catch (err) {
    await file?.close().catch(() => undefined)
    if (tmp !== undefined) await rm(tmp, { force: true })
    throw err
  }
  return { file: output ?? '-', entries }
}

async function answerError(res: Response): Promise<Error> {
  const text = await res.text().catch(() => '')
  let error: { code?: unknown; message?: unknown } | undefined
  try {
    error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error
  } catch {
    error = undefined
  }
  if (typeof error?.code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(error.code) && typeof error.message === 'string') {
    return new ControlPlaneError(error.code, res.status, error.message.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 500))
  }
  return cpError('CP_ERR_BAD_RESPONSE', `HTTP ${res.status} without an error code`)
}

function tailCommand(ctx: CliContext): CommandModule<GlobalArgs, TailArgs> {
  return {
    command: 'tail',
    describe: 'Show the newest audit entries, oldest first',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('n', { alias: 'lines', type: 'number', default: 20, describe: 'How many entries (1-1000)' })
        .example('$0 audit tail -n 50', 'the last 50 entries') as unknown as Argv<TailArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        if (!Number.isSafeInteger(args.n) || args.n < 1 || args.n > 1000) throw cpError('CP_ERR_USAGE', '-n must be an integer from 1 to 1000')
        const client = await connect(ctx, args)
        const answer = await client.get<{ entries: Entry[] }>('/v1/audit', { limit: args.n })
        if (args.json) return print(ctx, args, answer)
        print(ctx, args, answer.entries.map(row), ENTRY_COLUMNS)
      }),
  }
}

function queryCommand(ctx: CliContext): CommandModule<GlobalArgs, QueryArgs> {
  return {
    command: 'query',
    describe: 'Search the audit log by time, actor, action, target and outcome (oldest match first)',
    builder: (y: Argv<GlobalArgs>) =>
      filterOptions(y)
        .option('limit', { type: 'number', describe: 'At most this many entries (1-1000, default 100)' })
        .example('$0 audit query --action key.rotate --since 7d', 'rotations of the last week')
        .example('$0 audit query --outcome deny --since 2026-01-01T00:00:00Z --json', 'denials since New Year, as JSON') as unknown as Argv<QueryArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        if (args.limit !== undefined && (!Number.isSafeInteger(args.limit) || args.limit < 1 || args.limit > 1000)) {
          throw cpError('CP_ERR_USAGE', '--limit must be an integer from 1 to 1000')
        }
        const query: Record<string, string | number | undefined> = { ...filterQuery(args), limit: args.limit }
        // Without any filter the API answers a tail; a query always filters by something.
        if (Object.entries(query).every(([k, v]) => k === 'limit' || v === undefined)) query.from = '0'
        const client = await connect(ctx, args)
        const answer = await client.get<{ entries: Entry[] }>('/v1/audit', query)
        if (args.json) return print(ctx, args, answer)
        print(ctx, args, answer.entries.map(row), ENTRY_COLUMNS)
      }),
  }
}

function exportCommand(ctx: CliContext): CommandModule<GlobalArgs, ExportArgs> {
  return {
    command: 'export',
    describe: 'Export the audit log as JSON lines, to stdout or a file (written whole or not at all)',
    builder: (y: Argv<GlobalArgs>) =>
      filterOptions(y)
        .option('format', { type: 'string', choices: ['jsonl'], default: 'jsonl', describe: 'Output format: one JSON entry per line' })
        .option('output', { alias: 'o', type: 'string', describe: 'Write to this file (via a temporary file and a rename) instead of stdout' })
        .example('$0 audit export --format jsonl -o audit.jsonl', 'the whole log to a file')
        .example('$0 audit export --action key.rotate | jq .target', 'pipe into other tools') as unknown as Argv<ExportArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const query = filterQuery(args)
        const result = await exportAudit(ctx, args, query, args.output)
        if (args.output === undefined) return
        if (args.json) return print(ctx, args, result)
        ctx.stdout.write(`exported ${result.entries} audit entries to ${result.file}\n`)
      }),
  }
}

function verifyCommand(ctx: CliContext): CommandModule<GlobalArgs, VerifyArgs> {
  return {
    command: 'verify',
    describe: 'Recompute the audit hash chain and name the first broken entry (exit 3 when broken)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('data-dir', { type: 'string', describe: 'Check the store in this data directory offline (read-only; no master key or control plane needed)' })
        .example('$0 audit verify', 'ask the control plane to check its log')
        .example('$0 audit verify --data-dir /var/lib/keymesh --json', 'check a data directory (or a copy of it) offline') as unknown as Argv<VerifyArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        let view: Record<string, unknown>
        if (args.dataDir !== undefined) {
          const store = await openSqliteStore({ dir: args.dataDir, readOnly: true })
          try {
            view = verifyView(await createAuditLog().verify(store))
          } finally {
            await store.close()
          }
        } else {
          view = await (await connect(ctx, args)).get<Record<string, unknown>>('/v1/audit/verify')
        }
        if (args.json) print(ctx, args, view)
        else if (view['ok'] === true) {
          const head = view['head'] as { seq: number; hash: string } | undefined
          ctx.stdout.write(`audit log intact: ${entries(view['count'])}, head seq ${String(head?.seq)} hash ${String(head?.hash).slice(0, 16)}…\n`)
        } else {
          ctx.stdout.write(`audit log BROKEN at seq ${String(view['firstBadSeq'])} (${String(view['reason'])}); ${entries(view['count'])} before it verified\n`)
        }
        return view['ok'] === true ? 0 : EXIT_AUDIT_BROKEN
      }),
  }
}

export function auditCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'audit <command>',
    describe: 'Read, export and verify the audit log',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .command(tailCommand(ctx))
        .command(queryCommand(ctx))
        .command(exportCommand(ctx))
        .command(verifyCommand(ctx))
        .demandCommand(1, 'Name an audit command: tail, query, export or verify.'),
    handler: () => undefined,
  }
}
