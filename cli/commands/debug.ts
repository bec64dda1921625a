// `keymesh debug bundle`: what support needs in one file, without a secret in it.
// From a control plane (--cp / KEYMESH_CP, the operator token when given): /healthz,
// /readyz, /metrics, /v1/log-level and counts of agents and keys; from an agent
// (--api, its token as for `agent status`): /v1/status, /readyz, /metrics,
// /v1/log-level; --config FILE (JSON) and the last --lines of --log-file, both with
// secret-looking fields replaced (platform's redactFields). Every source is tried;
// one that fails is listed under "failed" in manifest.json and the bundle is still
// written: a tar.gz (cli/tar.ts, node:zlib), atomically, mode 0600. The tokens the
// command itself holds are scrubbed from every byte as a last guard.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs'
import { request } from 'node:http'
import { gzipSync } from 'node:zlib'
import type { Argv, CommandModule } from 'yargs'

import { agentError, type ApiListen } from '../../agent/src/index.js'
import { cpError } from '../../control-plane/src/index.js'
import { REDACT_CENSOR, redactFields, writeFileAtomic } from '../../platform/src/index.js'
import { readTokenFile, resolveClientConfig } from '../client.js'
import { print, run, type CliContext, type GlobalArgs } from '../context.js'
import { AGENT_API_OPTIONS, agentApiTarget } from '../agent-api.js'
import { tar, type TarEntry } from '../tar.js'
import { controlPlaneSender, get } from './doctor.js'

interface BundleArgs extends GlobalArgs {
  api?: string; apiTokenFile?: string; stateDir?: string; config?: string; logFile?: string; lines: number; output?: string
}

interface Fetched { readonly status: number; readonly text: string }
export interface Manifest {
  readonly created: string
  /** Where the bundle was made: this Node.js and OS (the control plane has no version route; its /metrics may say more). */
  readonly host: { readonly node: string; readonly platform: string }
  readonly collected: Array<{ file: string; bytes: number; status?: number }>
  readonly failed: Array<{ source: string; error: string }>
}

/** The most of a log file read (its end), whatever --lines says. */
const MAX_LOG_BYTES = 8 * 1024 * 1024
const TIMEOUT_MS = 5_000
/** `token=…`, `"key": "…"`, `Bearer …` in a log line that is not JSON. */
const SECRET_TEXT = /((?:token|secret|key|password|passphrase|plaintext|share|pin)[\w-]*["']?\s*[=:]\s*["']?)[^\s"',}]+|(bearer\s+)\S+/gi
/** An unseal share wherever it stands (custody/shares.ts: kms1-<installation>-<base64url>). */
const SHARE_TEXT = /kms1-[0-9a-z]+-[A-Za-z0-9_-]+/g

/** Credential headers, whose names redactFields' words do not cover. */
const CREDENTIAL_FIELD = /^(authorization|proxy-authorization|cookie|set-cookie)$/i

const maskText = (text: string): string =>
  text.replace(SECRET_TEXT, (_m, a: string | undefined, b: string | undefined) => `${a ?? b ?? ''}${REDACT_CENSOR}`).replace(SHARE_TEXT, REDACT_CENSOR)

/**
 * JSON text with secret-looking fields and credential headers replaced and
 * secret-looking assignments in its strings masked; text that is not JSON has
 * secret-looking assignments masked.
 */
export function redactText(text: string): string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return maskText(text)
  }
  return JSON.stringify(redactFields(value), (k, v: unknown) => (CREDENTIAL_FIELD.test(k) ? REDACT_CENSOR : typeof v === 'string' ? maskText(v) : v), 2)
}

/** The last `lines` lines of a log file (at most its last MAX_LOG_BYTES), each redacted. */
function logTail(path: string, lines: number): string {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    const len = Math.min(size, MAX_LOG_BYTES)
    const buf = Buffer.alloc(len)
    readSync(fd, buf, 0, len, size - len)
    const all = buf.toString('utf8').split('\n')
    if (len < size) all.shift()
    if (all.at(-1) === '') all.pop()
    return all.slice(-lines).map((l) => redactText(l).replace(/\n\s*/g, ' ')).join('\n') + '\n'
  } finally {
    closeSync(fd)
  }
}

/** GET over TCP or a unix socket (fetch has no unix sockets), the body as text. */
function agentGet(target: ApiListen, path: string, token: string | undefined): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = request({
      ...('socketPath' in target ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
      path,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      timeout: TIMEOUT_MS,
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)))
    req.on('error', reject)
    req.end()
  })
}

const countOf = (body: unknown): number | undefined => {
  if (Array.isArray(body)) return body.length
  const arrays = typeof body === 'object' && body !== null ? Object.values(body).filter(Array.isArray) : []
  return arrays.length === 1 ? (arrays[0] as unknown[]).length : undefined
}

export async function collectBundle(ctx: CliContext, args: BundleArgs, now: Date): Promise<{ entries: TarEntry[]; manifest: Manifest }> {
  const entries: TarEntry[] = []
  const manifest: Manifest = { created: now.toISOString(), host: { node: process.version, platform: `${process.platform}/${process.arch}` }, collected: [], failed: [] }
  const secrets: string[] = []
  const add = async (file: string, source: () => Promise<string | Fetched>): Promise<void> => {
    try {
      const got = await source()
      const text = typeof got === 'string' ? got : got.text
      entries.push({ name: file, data: Buffer.from(text), mtime: now.getTime() })
      manifest.collected.push({ file, bytes: Buffer.byteLength(text), ...(typeof got === 'string' ? {} : { status: got.status }) })
    } catch (err) {
      manifest.failed.push({ source: file, error: (err as Error).message.split('\n')[0] ?? 'failed' })
    }
  }
  const redacted = (f: () => Promise<Fetched>) => async (): Promise<Fetched> => {
    const r = await f()
    return { status: r.status, text: redactText(r.text) }
  }

  if (args.cp !== undefined || ctx.env['KEYMESH_CP'] !== undefined) {
    let root: string | undefined
    let token: string | undefined
    let send: typeof fetch = fetch
    try {
      const config = resolveClientConfig({ cp: args.cp, tokenFile: args.tokenFile }, ctx.env)
      send = await controlPlaneSender(args, ctx.env)
      root = config.baseUrl.replace(/\/+$/, '')
      if (config.tokenFile !== undefined) token = await readTokenFile(config.tokenFile)
    } catch (err) {
      manifest.failed.push({ source: 'control-plane', error: (err as Error).message.split('\n')[0] ?? 'failed' })
    }
    if (token !== undefined) secrets.push(token)
    if (root !== undefined) {
      const cp = (path: string) => async (): Promise<Fetched> => {
        const res = await get(`${root}${path}`, token, send).catch(() => { throw new Error(`no answer from ${root}${path} within ${TIMEOUT_MS} ms`) })
        return { status: res.status, text: await res.text() }
      }
      await add('control-plane/healthz.json', redacted(cp('/healthz')))
      await add('control-plane/readyz.json', redacted(cp('/readyz')))
      await add('control-plane/metrics.txt', cp('/metrics'))
      await add('control-plane/log-level.json', redacted(cp('/v1/log-level')))
      await add('control-plane/summary.json', async () => {
        const counts: Record<string, number | string> = {}
        for (const what of ['agents', 'keys']) {
          const res = await get(`${root}/v1/${what}`, token, send)
          counts[what] = res.ok ? countOf(await res.json()) ?? 'unknown' : `HTTP ${res.status}`
        }
        return JSON.stringify(counts, null, 2)
      })
    }
  }

  if (args.api !== undefined || ctx.env['KEYMESH_API'] !== undefined) {
    let target: ReturnType<typeof agentApiTarget> | undefined
    try {
      target = agentApiTarget(args, ctx.env, (detail) => agentError('AGENT_ERR_CONFIG', detail))
    } catch (err) {
      manifest.failed.push({ source: 'agent', error: (err as Error).message.split('\n')[0] ?? 'failed' })
    }
    if (target?.token !== undefined) secrets.push(target.token)
    if (target !== undefined) {
      const t = target
      const agent = (path: string) => () => agentGet(t, path, t.token)
      await add('agent/status.json', redacted(agent('/v1/status')))
      await add('agent/readyz.json', redacted(agent('/readyz')))
      await add('agent/metrics.txt', agent('/metrics'))
      await add('agent/log-level.json', redacted(agent('/v1/log-level')))
    }
  }

  if (args.config !== undefined) {
    const path = args.config
    await add('config.json', async () => {
      const text = readFileSync(path, 'utf8')
      try {
        JSON.parse(text)
      } catch {
        throw new Error(`${path} is not JSON: left out rather than risk a secret`)
      }
      return redactText(text)
    })
  }
  if (args.logFile !== undefined) {
    const path = args.logFile
    await add('log.txt', async () => logTail(path, args.lines))
  }

  // The last guard: no token this command holds leaves in any file.
  for (const [i, e] of entries.entries()) {
    let text = Buffer.from(e.data).toString('utf8')
    for (const s of secrets) text = text.split(s).join(REDACT_CENSOR)
    entries[i] = { ...e, data: Buffer.from(text) }
  }
  entries.unshift({ name: 'manifest.json', data: Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), mtime: now.getTime() })
  return { entries, manifest }
}

export function debugCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  const bundle: CommandModule<GlobalArgs, BundleArgs> = {
    command: 'bundle',
    describe: 'Write one tar.gz for support: status, metrics, log level of a control plane and/or an agent, a redacted --config and log tail. No secrets',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('api', { type: 'string', describe: 'An agent\'s --api address: HOST:PORT or unix:/path/to.sock (env KEYMESH_API)' })
        .options(AGENT_API_OPTIONS)
        .option('config', { type: 'string', describe: 'A JSON config file (agent or control plane) to include, secret-looking fields redacted' })
        .option('log-file', { type: 'string', describe: 'A log file whose last --lines lines to include, redacted' })
        .option('lines', { type: 'number', default: 1000, describe: 'How many lines of --log-file' })
        .option('output', { alias: 'o', type: 'string', describe: 'The archive to write (mode 0600). Default keymesh-debug-<UTC time>.tar.gz' })
        .example('$0 debug bundle --cp http://127.0.0.1:7400 --token-file admin.token', 'the control plane\'s side')
        .example('$0 debug bundle --api 127.0.0.1:7402 --state-dir ./web-agent --config agent.json --log-file agent.log -o web.tar.gz', 'an agent\'s side') as unknown as Argv<BundleArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        if (!Number.isInteger(args.lines) || args.lines < 1) throw cpError('CP_ERR_USAGE', '--lines must be a whole number of lines, 1 or more')
        const now = new Date()
        const output = args.output ?? `keymesh-debug-${now.toISOString().replace(/[:.]/g, '-')}.tar.gz`
        const { entries, manifest } = await collectBundle(ctx, args, now)
        writeFileAtomic(output, gzipSync(tar(entries)), 0o600)
        if (args.json) return print(ctx, args, { output, ...manifest })
        ctx.stdout.write(`${output}: ${manifest.collected.length} collected, ${manifest.failed.length} failed${manifest.failed.map((f) => `\n  ${f.source}: ${f.error}`).join('')}\n`)
      }),
  }
  return {
    command: 'debug <command>',
    describe: 'Support tools: debug bundle',
    builder: (y: Argv<GlobalArgs>) => y.command(bundle).demandCommand(1),
    handler: () => {},
  }
}
