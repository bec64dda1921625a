// `keymesh drop seal|open` against a real control plane and real agents with their
// local API: acme seals for globex with a KMS data key, globex opens, initech (who
// even holds decrypt) is refused; a drop altered in every single byte, truncated
// at every chunk boundary, with chunks swapped or duplicated, extended, or from
// another format version fails with a one-line reason and leaves no OUT file;
// offline x25519 drops; stdin/stdout; the progress line only on a terminal.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import yargs from 'yargs'

import { dropCommand } from '../../../cli/commands/drop.js'
import type { CliContext } from '../../../cli/context.js'
import { checkOutputFree, fileWriter, openReader, streamWriter } from '../../../cli/drop/files.js'
import { openDrop } from '../../../cli/drop/open.js'
import { progressLine } from '../../../cli/drop/progress.js'
import { runCommand } from '../../../cli/output.js'
import { parseApiListen } from '../../../agent/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import { decodeDropHeader, DEFAULT_DROP_CHUNK_SIZE } from '../../../protocol/src/index.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { startTestAgent, type TestAgent } from '../../kit/agent.js'
import { until } from '../../kit/wait.js'
import { cliContext, runCli } from '../../kit/cli.js'

const FULL = DEFAULT_DROP_CHUNK_SIZE + 16
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const pseudo = (n: number, seed = 1): Buffer => {
  const b = Buffer.alloc(n)
  let x = seed
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

// ---- one control plane and three agents for the whole file
const h = await startTestControlPlane(t)
const grant = async (name: string, service: string, rights: string[]): Promise<void> => {
  const g = await h.api('POST', `/v1/keys/${name}/grants`, { service, rights })
  if (g.status !== 200) throw new Error(`grant: ${g.status} ${JSON.stringify(g.body)}`)
}
await h.api('POST', '/v1/keys', { name: 'partner-files', type: 'aead' })
await grant('partner-files', 'acme', ['generate-data-key'])
await grant('partner-files', 'globex', ['decrypt'])
await grant('partner-files', 'initech', ['decrypt']) // holds decrypt, but is not the named recipient
await h.api('POST', '/v1/keys', { name: 'globex-inbox', type: 'x25519' })
await grant('globex-inbox', 'globex', ['decrypt'])

const agents: Record<string, TestAgent> = {}
for (const service of ['acme', 'globex', 'initech']) agents[service] = await startTestAgent(t, h, { service, api: true })
await until(() => Object.values(agents).every((a) => a.agent.status().controlPlane.state === 'connected'), 'agents connected')
const api = (service: string): string => (agents[service] as TestAgent).agent.apiUrl!.replace(/^http:\/\//, '')
/** `--api HOST:PORT --state-dir DIR`: the CLI reads the agent's API token from DIR/api.token. */
const apiArgs = (service: string): string[] => (agents[service] as TestAgent).apiArgs

const dir = t.testdir({})
let n = 0
const file = (name: string): string => join(dir, `${++n}-${name}`)
const put = (name: string, data: Uint8Array): string => {
  const p = file(name)
  writeFileSync(p, data)
  return p
}
/** Files in the test dir whose name marks a leftover temporary file. */
const leftovers = (): string[] => readdirSync(dir).filter((f) => f.endsWith('.tmp'))

const seal = (inPath: string, out: string, ...extra: string[]) =>
  runCli(['drop', 'seal', ...apiArgs('acme'), '--key', 'partner-files', '--to', 'globex', inPath, '-o', out, ...extra])
const open = (inPath: string, out: string, as = 'globex', ...extra: string[]) => runCli(['drop', 'open', ...apiArgs(as), inPath, '-o', out, ...extra])

/** Asserts a failed run: exit 1 (2 for usage), exactly one stderr line with `code`, and no OUT file. */
function refused(t: Test, r: { code: number; out: string; err: string }, out: string, code: RegExp | string): void {
  t.equal(r.code, code === 'CP_ERR_USAGE' ? 2 : 1, 'non-zero exit')
  t.match(r.err, typeof code === 'string' ? new RegExp(`\\(${code}\\)\\n$`) : code)
  t.equal(r.err.split('\n').length, 2, 'one line on stderr')
  t.notOk(existsSync(out), 'no OUT file')
}

const small = pseudo(100, 7)
const smallPlain = put('small.txt', small)
const smallDrop = file('small.drop')
const sealedSmall = await seal(smallPlain, smallDrop)
if (sealedSmall.code !== 0) throw new Error(`sealing the shared small drop failed: ${sealedSmall.err}`)
const smallBytes = readFileSync(smallDrop)

// Three full chunks and 5 bytes: the shared input of the chunk-level cases.
// (All shared drops are sealed before the first subtest: subtests run while this awaits.)
const multi = pseudo(3 * DEFAULT_DROP_CHUNK_SIZE + 5, 3)
const multiDrop = file('multi.drop')
await seal(put('multi.bin', multi), multiDrop)
const multiBytes = readFileSync(multiDrop)
const headerLen = decodeDropHeader(multiBytes)?.length ?? 0

t.test('a small drop round-trips: acme seals for globex, globex opens', async (t) => {
  t.match(sealedSmall.out, /^sealed 100 bytes from acme to globex \(kms, key partner-files v1\): .*small\.drop\n$/)
  const d = decodeDropHeader(smallBytes)
  t.match(d?.header, { mode: 'kms', sender: 'acme', recipient: 'globex', key: 'partner-files', keyVersion: 1 })
  const out = file('small.out')
  const r = await open(smallDrop, out)
  t.equal(r.code, 0, r.err)
  t.equal(sha(readFileSync(out)), sha(small), 'plaintext matches')
  t.equal(statSync(out).mode & 0o777, 0o600, 'plaintext is 0600')
  t.same(leftovers(), [], 'no temporary files left')
  const json = await open(smallDrop, file('small.json.out'), 'globex', '--json')
  t.match(JSON.parse(json.out), { mode: 'kms', from: 'acme', to: 'globex', key: 'partner-files', version: 1, bytes: 100 })
})

t.test('a multi-chunk drop round-trips, and an empty one too', async (t) => {
  t.equal(multiBytes.length, headerLen + 3 * FULL + 5 + 16, 'header, three full chunks and a short final one')
  const out = file('multi.out')
  t.equal((await open(multiDrop, out)).code, 0)
  t.equal(sha(readFileSync(out)), sha(multi))
  const emptyDrop = file('empty.drop')
  t.equal((await seal(put('empty', new Uint8Array(0)), emptyDrop)).code, 0)
  const emptyOut = file('empty.out')
  t.equal((await open(emptyDrop, emptyOut)).code, 0)
  t.equal(readFileSync(emptyOut).length, 0)
})

t.test('the named recipient alone opens: initech is refused although it holds decrypt', async (t) => {
  const out = file('initech.out')
  refused(t, await open(smallDrop, out, 'initech'), out, 'CP_ERR_NOT_RECIPIENT')
  // The sender cannot open it either (no decrypt grant, and not the recipient).
  const out2 = file('acme.out')
  refused(t, await open(smallDrop, out2, 'acme'), out2, /\((CP_ERR_FORBIDDEN|CP_ERR_NOT_RECIPIENT)\)\n$/)
})

t.test('a drop with any single byte flipped fails and writes nothing', async (t) => {
  // Every byte of the small drop (header, wrapped key, chunk, tag), through the
  // command's own pipeline (cli/drop/open.ts with the file reader and writer and
  // the real agent; the yargs layer is left out for speed: the cases below go
  // through the whole CLI). Header edits fail at the KMS (the wrapped key's
  // context or km1 text) or locally (format, chunk key); payload edits fail the tag.
  const failures: string[] = []
  const codes = new Set<string>()
  const globexApi = { ...parseApiListen(api('globex'), '--api'), token: (agents['globex'] as TestAgent).apiToken as string }
  const idx = [...smallBytes.keys()]
  for (let i = 0; i < idx.length; i += 16) {
    await Promise.all(idx.slice(i, i + 16).map(async (pos) => {
      const bad = Buffer.from(smallBytes)
      bad[pos] = (bad[pos] as number) ^ 0x01
      const p = put(`flip-${pos}.drop`, bad)
      const out = `${p}.out`
      try {
        await checkOutputFree(out, false)
        const reader = await openReader(p, Readable.from([]))
        const writer = await fileWriter(out, { force: false, mode: 0o600 })
        await openDrop({ suite: nodeSuite, api: globexApi, reader, writer, progress: progressLine({ write: () => true }, 'open', undefined) })
        failures.push(`byte ${pos}: opened`)
      } catch (err) {
        if (!isKeymeshError(err)) failures.push(`byte ${pos}: ${String(err)}`)
        else codes.add(err.code)
      }
      if (existsSync(out)) failures.push(`byte ${pos}: OUT exists`)
    }))
  }
  t.same(failures, [], `all ${smallBytes.length} flips refused with a KeymeshError and no OUT`)
  t.ok(codes.has('PROTO_ERR_DECRYPT') && codes.has('PROTO_ERR_DROP_FORMAT') && codes.has('CP_ERR_DECRYPT'), [...codes].join(' '))
  t.same(leftovers(), [])
  // And a few through the whole CLI: one line on stderr, no OUT.
  for (const pos of [0, 30, smallBytes.length - 60, smallBytes.length - 1]) {
    const bad = Buffer.from(smallBytes)
    bad[pos] = (bad[pos] as number) ^ 0x80
    const p = put(`cli-flip-${pos}.drop`, bad)
    refused(t, await open(p, `${p}.out`), `${p}.out`, /\((PROTO|CP)_ERR_[A-Z_]+\)\n$/)
  }
})

t.test('truncation at every chunk boundary, reordering, duplication, extension, another version', async (t) => {
  const chunk = (i: number): Buffer => multiBytes.subarray(headerLen + i * FULL, headerLen + (i + 1) * FULL)
  const head = multiBytes.subarray(0, headerLen)
  const cases: Array<[string, Uint8Array, RegExp]> = []
  for (let k = 0; k <= 3; k++) cases.push([`cut after ${k} chunks`, multiBytes.subarray(0, headerLen + k * FULL), /\(PROTO_ERR_DROP_TRUNCATED\)/])
  cases.push(
    ['cut inside the header', multiBytes.subarray(0, headerLen - 1), /\(PROTO_ERR_DROP_TRUNCATED\)/],
    ['cut mid-chunk', multiBytes.subarray(0, headerLen + FULL + 100), /: drop is truncated \(get the whole file again\): the data ends inside chunk 2, .*cut short.*\(PROTO_ERR_DROP_TRUNCATED\)\n$/],
    ['final chunk cut', multiBytes.subarray(0, multiBytes.length - 1), /\(PROTO_ERR_DROP_TRUNCATED\)/],
    ['cut inside the first chunk (as a wrong key would look)', multiBytes.subarray(0, headerLen + 100), /the first chunk does not verify: the drop was altered or cut short.*\(PROTO_ERR_DECRYPT\)/],
    ['chunks 0 and 1 swapped', Buffer.concat([head, chunk(1), chunk(0), multiBytes.subarray(headerLen + 2 * FULL)]), /\(PROTO_ERR_DECRYPT\)/],
    ['chunk 0 duplicated', Buffer.concat([head, chunk(0), multiBytes.subarray(headerLen)]), /\(PROTO_ERR_DECRYPT\)/],
    ['bytes appended', Buffer.concat([multiBytes, Buffer.from('more')]), /\(PROTO_ERR_(DROP_TRUNCATED|DROP_TRAILING)\)/],
    ['another format version', Buffer.concat([multiBytes.subarray(0, 6), Buffer.from([3]), multiBytes.subarray(7)]), /\(PROTO_ERR_DROP_VERSION\)/],
    ['not a drop at all', Buffer.from('hello, world'), /\(PROTO_ERR_DROP_FORMAT\)/],
    ['an empty file', new Uint8Array(0), /\(PROTO_ERR_DROP_FORMAT\)/],
  )
  for (const [what, bytes, code] of cases) {
    const p = put('case.drop', bytes)
    const out = `${p}.out`
    t.test(what, async (t) => refused(t, await open(p, out), out, code))
  }
  t.test('no temporary file is left behind', async (t) => t.same(leftovers(), []))
})

t.test('an existing OUT is kept unless --force; a missing input or agent is one line', async (t) => {
  const out = put('exists.out', Buffer.from('keep me'))
  const r = await open(smallDrop, out)
  t.equal(r.code, 1)
  t.match(r.err, /\(CP_ERR_FILE_EXISTS\)\n$/)
  t.equal(readFileSync(out, 'utf8'), 'keep me')
  t.equal((await open(smallDrop, out, 'globex', '--force')).code, 0)
  t.equal(sha(readFileSync(out)), sha(small), 'replaced with --force')

  const missing = file('missing.out')
  refused(t, await open(join(dir, 'no-such.drop'), missing), missing, /cannot read .*no-such\.drop: ENOENT \(AGENT_ERR_DROP_FILE\)\n$/)
  refused(t, await runCli(['drop', 'open', '--api', '127.0.0.1:1', '--state-dir', (agents['globex'] as TestAgent).stateDir, smallDrop, '-o', missing]), missing, 'AGENT_ERR_API_UNREACHABLE')
  const noDir = join(dir, 'no-such-dir', 'x.out')
  refused(t, await open(smallDrop, noDir), noDir, 'AGENT_ERR_DROP_FILE')
  refused(t, await seal(smallPlain, missing, '--to', 'Not_A_Service'), missing, 'CP_ERR_USAGE')
  const unknownKey = await runCli(['drop', 'seal', ...apiArgs('acme'), '--key', 'nope', '--to', 'globex', smallPlain, '-o', missing])
  refused(t, unknownKey, missing, 'CP_ERR_KEY_NOT_FOUND')
})

/** Runs the drop command with an injected stdin and a byte-collecting stdout (what main() cannot inject). */
async function runDrop(argv: string[], stdin: Readable): Promise<{ code: number; out: Buffer; err: string }> {
  const chunks: Buffer[] = []
  let err = ''
  const stdout = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c)
      cb()
    },
  })
  const ctx = cliContext({ stdout, stderr: { write: (s: string) => (err += s) } })
  const code = await runCommand(() => yargs(argv).command(dropCommand(ctx, { stdin })).strict().fail((msg, e) => {
    throw e ?? new Error(msg)
  }).parseAsync().then(() => ctx.exitCode))
  return { code, out: Buffer.concat(chunks), err }
}

t.test('the file writer flushes as it goes, and a failing stdout is one error', async (t) => {
  // syncEvery far below the 64 MiB default, so the background flushes run here.
  const out = file('flushed.out')
  const w = await fileWriter(out, { force: false, mode: 0o600, syncEvery: 1000 })
  for (let i = 0; i < 20; i++) await w.write([pseudo(700, i), pseudo(300, i + 100)])
  t.notOk(existsSync(out), 'nothing at OUT before commit')
  await w.commit()
  t.equal(readFileSync(out).length, 20_000)
  const gone = file('aborted.out')
  const w2 = await fileWriter(gone, { force: false, mode: 0o600, syncEvery: 1000 })
  await w2.write([pseudo(5000)])
  await w2.abort()
  t.notOk(existsSync(gone))
  t.same(leftovers(), [])

  const broken = new Writable({ highWaterMark: 1, write: (_c, _e, cb) => cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })) })
  const sw = streamWriter(broken)
  await t.rejects(async () => {
    for (let i = 0; i < 3; i++) await sw.write([pseudo(10)])
    await sw.commit()
  }, { code: 'AGENT_ERR_DROP_FILE', message: /cannot write stdout: EPIPE/ })
  await sw.abort()
})

t.test('the progress line without a known size shows bytes and rate only', async (t) => {
  let err = ''
  let clock = 0
  const p = progressLine({ isTTY: true, write: (s: string) => (err += s) }, 'open', undefined, () => (clock += 1000))
  p.add(2_500_000)
  p.done()
  t.match(err, /\ropen 2\.5 MB  [0-9.]+ MB\/s\x1b\[K\n$/)
  t.notMatch(err, /%/)
})

t.test('stdin to stdout: seal from a pipe, open to a pipe', async (t) => {
  const data = pseudo(2 * DEFAULT_DROP_CHUNK_SIZE + 77, 9)
  // Fed in odd-sized pieces, as a pipe would.
  const pieces = (b: Buffer): Readable => Readable.from((function* () {
    for (let i = 0; i < b.length; i += 10_007) yield b.subarray(i, i + 10_007)
  })())
  const sealed = await runDrop(['drop', 'seal', ...apiArgs('acme'), '--key', 'partner-files', '--to', 'globex', '-', '-o', '-'], pieces(data))
  t.equal(sealed.code, 0, sealed.err)
  t.equal(sealed.err, '')
  t.equal(decodeDropHeader(sealed.out)?.header.recipient, 'globex')
  const opened = await runDrop(['drop', 'open', ...apiArgs('globex'), '-', '-o', '-'], pieces(sealed.out))
  t.equal(opened.code, 0, opened.err)
  t.equal(sha(opened.out), sha(data))
  // main()'s stdout in tests takes strings only: binary output is refused, not mangled.
  const r = await runCli(['drop', 'open', ...apiArgs('globex'), smallDrop, '-o', '-'])
  t.equal(r.code, 2)
  t.match(r.err, /stdout cannot take binary output.*\(CP_ERR_USAGE\)/)
})

t.test('offline x25519: key public -o FILE, seal without an agent, the recipient opens', async (t) => {
  const tokenFile = put('admin.token', Buffer.from(h.adminToken))
  chmodSync(tokenFile, 0o600)
  const pub = file('globex-inbox.pub')
  const exported = await runCli(['key', 'public', 'globex-inbox', '-o', pub, '--cp', h.cp.url, '--token-file', tokenFile])
  t.equal(exported.code, 0, exported.err)
  t.match(JSON.parse(readFileSync(pub, 'utf8')), { name: 'globex-inbox', version: 1, publicKey: /^x25519:/ })

  const data = pseudo(DEFAULT_DROP_CHUNK_SIZE + 1, 11)
  const drop = file('offline.drop')
  const sealed = await runCli(['drop', 'seal', '--recipient-key', pub, '--to', 'globex', '--from', 'partner', put('offline.bin', data), '-o', drop])
  t.equal(sealed.code, 0, sealed.err)
  t.match(decodeDropHeader(readFileSync(drop))?.header, { mode: 'x25519', sender: 'partner', recipient: 'globex', key: 'globex-inbox', keyVersion: 1 })
  const out = file('offline.out')
  const opened = await open(drop, out)
  t.equal(opened.code, 0, opened.err)
  t.equal(sha(readFileSync(out)), sha(data))

  // Without --from the sender is empty (an outside partner).
  const anon = file('anon.drop')
  t.equal((await runCli(['drop', 'seal', '--recipient-key', pub, '--to', 'globex', smallPlain, '-o', anon])).code, 0)
  t.equal(decodeDropHeader(readFileSync(anon))?.header.sender, '')
  t.equal((await open(anon, file('anon.out'))).code, 0)

  // initech has no decrypt on globex-inbox and is not the recipient.
  const refusedOut = file('offline-initech.out')
  refused(t, await open(drop, refusedOut, 'initech'), refusedOut, /\((CP_ERR_FORBIDDEN|CP_ERR_NOT_RECIPIENT)\)\n$/)
  // A bare x25519: line does not say which key and version: refused with a hint.
  const bare = put('bare.pub', Buffer.from(`${JSON.parse(readFileSync(pub, 'utf8')).publicKey}\n`))
  const bareOut = file('bare.drop')
  refused(t, await runCli(['drop', 'seal', '--recipient-key', bare, '--to', 'globex', smallPlain, '-o', bareOut]), bareOut, /without its key name and version.*\(AGENT_ERR_RECIPIENT_KEY\)\n$/)
  refused(t, await runCli(['drop', 'seal', '--recipient-key', pub, '--key', 'partner-files', '--to', 'globex', smallPlain, '-o', bareOut]), bareOut, 'CP_ERR_USAGE')
})

t.test('a progress line on a terminal, none when stderr is piped', async (t) => {
  const data = put('progress.bin', pseudo(3 * 1024 * 1024, 5))
  // Piped (runCli's stderr is not a TTY): nothing on stderr at all.
  const quiet = await seal(data, file('quiet.drop'))
  t.equal(quiet.code, 0)
  t.equal(quiet.err, '')
  // A terminal: the line is drawn with percent and MB/s, and ends with a newline.
  let err = ''
  let clock = 0
  const tty = { isTTY: true, columns: 100, write: (s: string) => (err += s) }
  const ctx = cliContext({ stderr: tty })
  await yargs(['drop', 'seal', ...apiArgs('acme'), '--key', 'partner-files', '--to', 'globex', data, '-o', file('tty.drop')])
    .command(dropCommand(ctx, { now: () => (clock += 50) })).strict().parseAsync()
  t.equal(ctx.exitCode, 0, err)
  t.match(err, /\rseal \[#+\] 100%  3\.1 MB \/ 3\.1 MB  [0-9.]+ MB\/s\x1b\[K\n$/)
  t.ok(err.split('\r').length > 2, 'redrawn as it goes')
})
