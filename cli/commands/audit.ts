// `keymesh audit tail|query|export|verify|checkpoint`: read, export and check the audit log.
// `verify --data-dir DIR` works offline: it opens the store read-only, needs no
// running control plane, and exits 3 when the chain is broken (1 when it could
// not check at all), so scripts can tell the two apart. What it can tell
// depends on what it holds:
//   - the master key (--master-key-file, KEYMESH_MASTER_KEY, else the development
//     key file or an old DIR/master.key when present): every entry's MAC, so any
//     rewrite by a database writer (a share-sealed installation: only online);
//   - the audit public key (--public-key, else DIR/audit.pub when present): the
//     signatures of the stored checkpoints and of a --checkpoint file, so a
//     rewrite or cut of anything up to a checkpoint;
//   - neither: only that the rows form a chain (an accident, not an attacker).
// --expect-head SEQ:HASH needs no key: the chain must pass through that head.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { open, rename, rm, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Argv, CommandModule } from 'yargs'

import { verifyView } from '../../control-plane/src/index.js'
import { createAuditLog } from '../../control-plane/src/index.js'
import { cpError } from '../../control-plane/src/index.js'
import { custodyOf, devKeyPath, storeKeyFromMaster, type Store } from '../../control-plane/src/index.js'
import { nodeSuite } from '../../protocol/src/index.js'
import { configHome } from './custody.js'
import { AUDIT_PUB_FILE, MASTER_KEY_FILE, auditChainKey, checkpointJson, decodeMasterKeyText, parseAuditPublicKey, parseCheckpoint, readMasterKeyFile } from '../../control-plane/src/index.js'
import { fsyncDir } from '../../platform/src/index.js'
import { AUDIT_OUTCOMES } from '../../control-plane/src/index.js'
import { openSqliteStore } from '../../control-plane/src/index.js'
import { ControlPlaneError, readTokenFile, resolveClientConfig } from '../client.js'
import { clientFlags, connect, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { connectFailure, controlPlaneFetch, loadTrust } from '../transport.js'
import { parseDuration } from '../duration.js'
import { localTime, type Column } from '../output.js'

/** Exit code of `audit verify` when the chain is broken (an error that stopped the check is 1). */
export const EXIT_AUDIT_BROKEN = 3

interface TailArgs extends GlobalArgs { n: number }
interface QueryArgs extends GlobalArgs {
  since?: string; until?: string; actor?: string; action?: string; target?: string; outcome?: string; limit?: number
}
interface ExportArgs extends GlobalArgs { format: string; output?: string; since?: string; until?: string; actor?: string; action?: string; target?: string; outcome?: string }
interface VerifyArgs extends GlobalArgs {
  dataDir?: string; masterKeyFile?: string; publicKey?: string; checkpoint?: string; expectHead?: string
}
interface CheckpointArgs extends GlobalArgs { dataDir?: string; publicKey?: string }
interface Head { seq: number; hash: Uint8Array }

interface Entry { seq: number; at: number; actor: string; action: string; target: string; outcome: string; reason: string }

const entries = (n: unknown): string => `${String(n)} ${n === 1 ? 'entry' : 'entries'}`

const ENTRY_COLUMNS: readonly Column[] = ['seq', 'time', 'actor', 'action', 'target', 'outcome', 'reason']
const row = (e: Entry): Record<string, unknown> => ({ ...e, time: localTime(e.at) })

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
  const flags = clientFlags(args)
  const config = resolveClientConfig(flags, ctx.env)
  if (config.tokenFile === undefined) throw cpError('CP_ERR_USAGE', 'name a token file with --token-file F or KEYMESH_TOKEN_FILE')
  const token = await readTokenFile(config.tokenFile)
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v)
  const qs = params.toString()
  let res: Response
  try {
    res = await controlPlaneFetch(await loadTrust(flags, ctx.env))(`${config.baseUrl}/v1/audit/export${qs === '' ? '' : `?${qs}`}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' },
      redirect: 'manual',
    })
  } catch (err) {
    throw await connectFailure(err, { baseUrl: config.baseUrl })
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

/** The error an answer that is not 2xx carries (its CP_ERR_… code and message), for streaming fetches. */
export async function answerError(res: Response): Promise<Error> {
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

/** `--expect-head SEQ:HASH`: a head recorded earlier (e.g. from `audit verify --json`). */
export function parseExpectHead(text: string): Head {
  const m = /^(\d{1,15}):([0-9a-f]{64})$/.exec(text.trim())
  const seq = m ? Number(m[1]) : 0
  if (!m || seq < 1) throw cpError('CP_ERR_USAGE', '--expect-head must be SEQ:HASH, a sequence number and 64 lowercase hex digits')
  return { seq, hash: new Uint8Array(Buffer.from(m[2] as string, 'hex')) }
}

function readText(path: string, code: 'CP_ERR_AUDIT_KEY' | 'CP_ERR_AUDIT_CHECKPOINT'): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (cause) {
    throw cpError(code, `cannot read ${path} (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause })
  }
}

/** The trusted audit public key: --public-key, else DIR/audit.pub when there is one. */
function trustedPublicKey(file: string | undefined, dataDir: string | undefined): Uint8Array | undefined {
  const path = file ?? (dataDir !== undefined && existsSync(join(dataDir, AUDIT_PUB_FILE)) ? join(dataDir, AUDIT_PUB_FILE) : undefined)
  return path === undefined ? undefined : parseAuditPublicKey(readText(path, 'CP_ERR_AUDIT_KEY'))
}

/**
 * The chain key, from the store key (control-plane/src/custody/record.ts), from the master
 * key: --master-key-file, KEYMESH_MASTER_KEY, else the installation's development key
 * (custody "file", in the config directory) or, on a store from before custody,
 * DIR/master.key, when there is one this user may read. An installation unsealed with
 * shares has none offline: its MACs are checked online (keymesh audit verify).
 */
async function offlineChainKey(args: VerifyArgs, env: Readonly<Record<string, string | undefined>>, dataDir: string, store: Store): Promise<Uint8Array | undefined> {
  const envValue = env['KEYMESH_MASTER_KEY']
  const custody = await custodyOf(store)
  const home = configHome(env)
  const inDir = custody ? (custody.kind === 'file' && home !== undefined ? devKeyPath(home, custody.installation) : undefined) : join(dataDir, MASTER_KEY_FILE)
  const key = args.masterKeyFile !== undefined ? readMasterKeyFile(args.masterKeyFile)
    : envValue !== undefined ? decodeMasterKeyText(envValue, 'KEYMESH_MASTER_KEY')
    : inDir !== undefined && existsSync(inDir) ? readIfAllowed(inDir)
    : undefined
  if (key === undefined) return undefined
  try {
    const storeKey = await storeKeyFromMaster(store, key, nodeSuite)
    try {
      return auditChainKey(storeKey)
    } finally {
      storeKey.fill(0)
    }
  } finally {
    key.fill(0)
  }
}

/** A key file found (not named) when this user may read it; otherwise the check goes on without MACs, and says so. */
function readIfAllowed(path: string): Uint8Array | undefined {
  try {
    return readMasterKeyFile(path)
  } catch {
    return undefined
  }
}

/** The heads the chain must pass through: a signed checkpoint file, checked here, and --expect-head. */
function trustedHeads(args: VerifyArgs, publicKey: Uint8Array | undefined): Head[] {
  const heads: Head[] = []
  if (args.checkpoint !== undefined) {
    if (publicKey === undefined) throw cpError('CP_ERR_AUDIT_KEY', 'a checkpoint is checked with the audit public key: name it with --public-key FILE')
    heads.push(parseCheckpoint(readText(args.checkpoint, 'CP_ERR_AUDIT_CHECKPOINT'), publicKey))
  }
  if (args.expectHead !== undefined) heads.push(parseExpectHead(args.expectHead))
  return heads
}

function verifyCommand(ctx: CliContext): CommandModule<GlobalArgs, VerifyArgs> {
  return {
    command: 'verify',
    describe: 'Recompute the audit chain, its MACs and checkpoints, and name the first broken entry (exit 3 when broken)',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('data-dir', { type: 'string', describe: 'Check the store in this data directory offline (read-only; no control plane needed)' })
        .option('master-key-file', { type: 'string', describe: 'Offline: the master key, to check every entry\'s MAC (else env KEYMESH_MASTER_KEY, else the development key file or an old DIR/master.key when present; a share-sealed installation: verify online)' })
        .option('public-key', { type: 'string', describe: 'The audit public key (audit.pub) that checkpoints are checked with (offline default: DIR/audit.pub when present)' })
        .option('checkpoint', { type: 'string', describe: 'A checkpoint file from `audit checkpoint --json`: the log must still pass through it' })
        .option('expect-head', { type: 'string', describe: 'SEQ:HASH of a head recorded earlier: the log must still pass through it' })
        .example('$0 audit verify', 'ask the control plane to check its log')
        .example('$0 audit verify --data-dir /var/lib/keymesh --json', 'check a data directory (or a copy of it) offline')
        .example('$0 audit verify --data-dir ./copy --public-key audit.pub --checkpoint cp.json', 'without the master key: is everything up to the checkpoint unchanged?') as unknown as Argv<VerifyArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        let view: Record<string, unknown>
        if (args.dataDir !== undefined) {
          const publicKey = trustedPublicKey(args.publicKey, args.dataDir)
          const expect = trustedHeads(args, publicKey)
          const store = await openSqliteStore({ dir: args.dataDir, readOnly: true })
          let chainKey: Uint8Array | undefined
          try {
            chainKey = await offlineChainKey(args, ctx.env, args.dataDir, store)
            view = verifyView(await createAuditLog({ chainKey, publicKey }).verify(store, { expect }))
          } finally {
            await store.close()
            chainKey?.fill(0)
          }
        } else {
          if (args.masterKeyFile !== undefined) throw cpError('CP_ERR_USAGE', '--master-key-file is for offline checks (--data-dir); the control plane checks MACs itself')
          const expect = trustedHeads(args, trustedPublicKey(args.publicKey, undefined))
          if (expect.length > 1) throw cpError('CP_ERR_USAGE', 'through the control plane, give --checkpoint or --expect-head, not both')
          const query = expect[0] ? { expectSeq: expect[0].seq, expectHash: Buffer.from(expect[0].hash).toString('hex') } : {}
          view = await (await connect(ctx, args)).get<Record<string, unknown>>('/v1/audit/verify', query)
        }
        // Offline, a chain with neither MACs nor a trusted head checked proves nothing:
        // a database writer recomputes the hashes. Not a pass, and said so.
        const unverified = args.dataDir !== undefined && view['ok'] === true && view['macs'] !== 'checked' && Number(view['checkpoints'] ?? 0) === 0
        if (unverified) {
          if (args.json) print(ctx, args, view)
          const head = view['head'] as { seq: number } | undefined
          throw cpError('CP_ERR_AUDIT_UNVERIFIED', `${entries(view['count'])} up to seq ${String(head?.seq)} hold together, but no MAC was checked (no master key at hand) and no signed checkpoint or expected head; give --master-key-file (or KEYMESH_MASTER_KEY), or --public-key with --checkpoint or --expect-head`)
        }
        if (args.json) print(ctx, args, view)
        else if (view['ok'] === true) {
          const head = view['head'] as { seq: number; hash: string } | undefined
          const macs = view['macs'] === 'checked' ? 'MACs checked' : 'MACs NOT checked (no master key)'
          const n = Number(view['checkpoints'] ?? 0)
          ctx.stdout.write(`audit log intact: ${entries(view['count'])}, head seq ${String(head?.seq)} hash ${String(head?.hash).slice(0, 16)}…; ${macs}; ${n} checkpoint${n === 1 ? '' : 's'} matched\n`)
        } else {
          ctx.stdout.write(`audit log BROKEN at seq ${String(view['firstBadSeq'])} (${String(view['reason'])}); ${entries(view['count'])} before it verified\n`)
        }
        return view['ok'] === true ? 0 : EXIT_AUDIT_BROKEN
      }),
  }
}

function checkpointCommand(ctx: CliContext): CommandModule<GlobalArgs, CheckpointArgs> {
  return {
    command: 'checkpoint',
    describe: 'Show the newest signed audit checkpoint; keep its --json form to check the log against later',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('data-dir', { type: 'string', describe: 'Read it from the store in this data directory offline' })
        .option('public-key', { type: 'string', describe: 'Offline: the audit public key to check it with (default DIR/audit.pub)' })
        .example('$0 audit checkpoint --json > checkpoint.json', 'keep it somewhere a database writer cannot reach')
        .example('$0 audit verify --checkpoint checkpoint.json --public-key audit.pub', 'later: does the log still pass through it?') as unknown as Argv<CheckpointArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        let view: Record<string, unknown>
        if (args.dataDir !== undefined) {
          const publicKey = trustedPublicKey(args.publicKey, args.dataDir)
          if (publicKey === undefined) throw cpError('CP_ERR_AUDIT_KEY', `no ${AUDIT_PUB_FILE} in ${args.dataDir}: name the audit public key with --public-key FILE`)
          const store = await openSqliteStore({ dir: args.dataDir, readOnly: true })
          try {
            const c = await createAuditLog().latestCheckpoint(store)
            if (!c) throw cpError('CP_ERR_NO_CHECKPOINT')
            view = checkpointJson(c, publicKey)
            // Shown only when it verifies: a forged row must not be exported as a checkpoint.
            parseCheckpoint(JSON.stringify(view), publicKey)
          } finally {
            await store.close()
          }
        } else {
          view = await (await connect(ctx, args)).get<Record<string, unknown>>('/v1/audit/checkpoint')
        }
        if (args.json) return print(ctx, args, view)
        ctx.stdout.write(`audit checkpoint: seq ${String(view['seq'])} hash ${String(view['hash'])} at ${String(view['time'])}, signed by ${String(view['signer'])}\n`)
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
        .command(checkpointCommand(ctx))
        .demandCommand(1, 'Name an audit command: tail, query, export, verify or checkpoint.'),
    handler: () => undefined,
  }
}
