// The quick path against yargs: for every command, the lines the quick path accepts
// reach the handler with exactly the arguments yargs gives it, and every line it is not
// sure of (help, a mistake, a form it does not read) is left to yargs.
import t from 'tap'
import type { CommandModule } from 'yargs'

import { COMMANDS, GLOBAL_OPTIONS, runYargs } from '../../cli/main.js'
import { commandShape, quickParse } from '../../cli/quick-path.js'
import { cliContext } from '../kit/cli.js'

type Args = Record<string, unknown>

/** `module` with every handler, its own and its subcommands', replaced by `seen`. */
function capturing(module: CommandModule, seen: (args: Args) => void): CommandModule {
  const builder = module.builder
  return {
    ...module,
    handler: (args) => seen(args as Args),
    builder: typeof builder !== 'function' ? builder : (y) => {
      const wrapped: unknown = new Proxy(y, {
        get: (target, prop) => {
          if (prop === 'command') return (sub: CommandModule) => (target.command(capturing(sub, seen)), wrapped)
          const value = Reflect.get(target, prop) as unknown
          return typeof value !== 'function' ? value : (...a: unknown[]) => {
            const r = (value as (...a: unknown[]) => unknown).apply(target, a)
            return r === target ? wrapped : r
          }
        },
      })
      return (builder as (y: unknown) => never)(wrapped)
    },
  }
}

/** What yargs hands the handler for `argv`, or undefined when it refused the line. */
async function yargsArgs(name: string, argv: string[]): Promise<Args | undefined> {
  const factory = await (COMMANDS[name] as () => Promise<(ctx: ReturnType<typeof cliContext>) => CommandModule>)()
  let got: Args | undefined
  const code = await runYargs(argv, cliContext(), [(ctx) => capturing(factory(ctx), (a) => (got = { ...a })) as never])
  return code === 0 ? got : undefined
}

async function moduleOf(name: string): Promise<CommandModule> {
  return (await (COMMANDS[name] as () => Promise<(ctx: ReturnType<typeof cliContext>) => CommandModule>)())(cliContext())
}

interface Leaf { path: string[]; module: CommandModule }

function leaves(module: CommandModule, prefix: string[] = []): Leaf[] {
  const path = [...prefix, String(module.command).split(' ')[0] as string]
  const shape = commandShape(module)
  return shape.subcommands.length === 0 ? [{ path, module }] : shape.subcommands.flatMap((s) => leaves(s, path))
}

/** A value the option accepts. */
function valueFor(spec: { type?: unknown; choices?: readonly unknown[] }, n: number): string {
  if (spec.choices !== undefined) return String(spec.choices[n % spec.choices.length])
  return spec.type === 'number' ? String(n + 2) : `v${n}`
}

/** Right lines for a leaf: its demanded words and options only, then every option (one of each conflict). */
function rightLines(leaf: Leaf): string[][] {
  const shape = commandShape(leaf.module)
  const words = String(leaf.module.command).split(' ').slice(1).filter((w) => w.startsWith('<')).map((_w, i) => `w${i}`)
  const dropped = new Set(shape.conflicts.map(([, b]) => b))
  const minimal: string[] = []
  const full: string[] = []
  let n = 0
  for (const [key, spec] of shape.options) {
    const give = (line: string[]): void => {
      if (spec.type === 'boolean') line.push(n % 2 === 0 ? `--${key}` : `--no-${key}`)
      else if (n % 3 === 0) line.push(`--${key}=${valueFor(spec, n)}`)
      else {
        const name = typeof spec.alias === 'string' ? spec.alias : key
        line.push(name.length === 1 ? `-${name}` : `--${name}`, valueFor(spec, n))
      }
    }
    if (spec.demandOption !== undefined && spec.demandOption !== false) give(minimal)
    if (!dropped.has(key)) give(full)
    n++
  }
  return [
    [...leaf.path, ...words, ...minimal],
    ['--cp', 'http://127.0.0.1:9', '--json', ...leaf.path, ...words, ...full, '--debug'],
  ]
}

t.test('on every command, a line the quick path takes gets the arguments yargs gives', async (t) => {
  let compared = 0
  const understood: string[] = []
  for (const name of Object.keys(COMMANDS)) {
    for (const leaf of leaves(await moduleOf(name))) {
      for (const argv of rightLines(leaf)) {
        const quick = quickParse(await moduleOf(name), argv, GLOBAL_OPTIONS)
        if (quick === undefined) continue
        const expected = await yargsArgs(name, argv)
        t.same(quick.args, expected, `keymesh ${argv.join(' ')}`)
        compared++
        understood.push(leaf.path.join(' '))
      }
    }
  }
  const distinct = new Set(understood)
  t.ok(distinct.has('key list') && distinct.has('key create') && distinct.has('audit tail'), 'the short commands are read')
  t.ok(distinct.size >= 40, `${distinct.size} commands read, ${compared} lines compared`)
})

t.test('the forms people type: one-letter options, negations, options first, words that look like numbers', async (t) => {
  const lines = [
    ['audit', 'tail', '-n', '5'], ['audit', 'tail', '--lines=7', '--json'], ['--json', 'key', 'list'], ['--cp=http://x', 'key', 'list', '--type', 'pair'],
    ['key', 'public', 'k', '-o', 'f', '--force'], ['key', 'set', 'k', '--no-rotation', '--min-decrypt-version', '3'], ['key', 'list', '--no-json'],
    ['key', 'show', '123'], ['key', 'enable', '007', '--version', '2'], ['key', 'grant', 'k', '--allow', 'encrypt,decrypt', '--service', 'b'],
    ['--token-file', 'f', 'key', 'show', 'k'], ['intention', 'allow', 'web', 'api', '--dry-run'],
  ]
  for (const argv of lines) {
    const name = argv.find((w) => Object.hasOwn(COMMANDS, w)) as string
    const quick = quickParse(await moduleOf(name), argv, GLOBAL_OPTIONS)
    t.ok(quick, `keymesh ${argv.join(' ')}: read`)
    t.same(quick?.args, await yargsArgs(name, argv), `keymesh ${argv.join(' ')}: as yargs reads it`)
  }
})

t.test('lines that are wrong, ask for help or use a form it does not read go to yargs', async (t) => {
  const key = await moduleOf('key')
  const refused = [
    ['key', 'list', '--help'], ['key', 'list', '-h'], ['key', '--help'], ['key'], ['key', 'lst'],
    ['key', 'list', '--bogus'], ['key', 'list', '--type', 'aes'], ['key', 'list', '--type'], ['key', 'list', '--type='],
    ['key', 'list', '--json', '--json'], ['key', 'list', 'extra'], ['key', 'show'], ['key', 'show', 'a', 'b'],
    ['key', 'create', 'k'], ['key', 'set', 'k', '--rotate-every', '1d', '--no-rotation'], ['key', 'rotate', 'k', '--json=true'],
    ['key', 'enable', 'k', '--version', 'x'], ['key', 'enable', 'k', '--version', '0x10'], ['key', 'list', '--', 'x'],
    ['key', 'list', '--type', '-x'], ['key', '--type', 'aead', 'list'], ['key', 'list', '-jx'], ['key', 'list', '--rotateEvery', '1d'],
    ['--version'], ['key', 'list', '--version'], ['key', 'list', '--get-yargs-completions'],
  ]
  for (const argv of refused) t.equal(quickParse(key, argv, GLOBAL_OPTIONS), undefined, `keymesh ${argv.join(' ')}`)
  const unreadBuilder: CommandModule = { command: 'x', describe: 'x', builder: (y) => y.middleware([]), handler: () => undefined }
  t.equal(quickParse(unreadBuilder, ['x'], GLOBAL_OPTIONS), undefined, 'a builder call it does not know')
  const objectBuilder: CommandModule = { command: 'x', describe: 'x', builder: { a: { type: 'string' } }, handler: () => undefined }
  t.equal(quickParse(objectBuilder, ['x'], GLOBAL_OPTIONS), undefined, 'a builder given as an object')
  const arrayOption: CommandModule = { command: 'x', describe: 'x', builder: (y) => y.option('a', { type: 'array' }), handler: () => undefined }
  t.equal(quickParse(arrayOption, ['x', '--a', 'b'], GLOBAL_OPTIONS), undefined, 'an option type it does not read')
  const aliased: CommandModule = { command: 'x', aliases: ['y'], describe: 'x', handler: () => undefined }
  t.equal(quickParse(aliased, ['x'], GLOBAL_OPTIONS), undefined, 'a command with aliases')
})

t.test('a right line through main() reaches its handler (light.test.ts: without yargs)', async (t) => {
  const { main } = await import('../../cli/main.js')
  let err = ''
  const code = await main(['key', 'list', '--cp', 'http://127.0.0.1:9', '--token-file', '/nonexistent'], { stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) }, env: {} })
  t.equal(code, 1)
  t.match(err, /CP_ERR_TOKEN_FILE/, 'the handler ran and reported its own error')
})
