// Every argument error is one line on stderr with a usage code, a pointer to the
// command's --help and exit 2, whatever the command: the commands are enumerated
// from their yargs definitions (main.ts's COMMANDS and the subcommands their
// builders declare), so a command added later is covered without touching this file.
import t from 'tap'
import type { CommandModule } from 'yargs'

import { COMMANDS, namedCommand } from '../../cli/main.js'
import { commandShape } from '../../cli/quick-path.js'
import { cliChild, cliContext, runCli } from '../kit/cli.js'

/** The first word of a command's spelling: `create <name>` → `create`. */
const word = (c: CommandModule): string => String(Array.isArray(c.command) ? c.command[0] : c.command).split(' ')[0] as string

/** Every command path, e.g. ['key'], ['key', 'list'], ['agent', 'status']. */
async function commandPaths(): Promise<string[][]> {
  const paths: string[][] = []
  const walk = (c: CommandModule, prefix: string[]): void => {
    const path = [...prefix, word(c)]
    paths.push(path)
    for (const s of commandShape(c).subcommands) walk(s, path)
  }
  for (const load of Object.values(COMMANDS)) walk((await load())(cliContext()) as CommandModule, [])
  return paths
}

t.test('every command, given a flag it does not know, says so in one line with a code and exits 2', async (t) => {
  const paths = await commandPaths()
  t.ok(paths.length >= 40, `found the commands (${paths.length})`)
  t.ok(paths.some((p) => p.join(' ') === 'key list') && paths.some((p) => p.join(' ') === 'agent status'), 'subcommands included')
  for (const path of paths) {
    const r = await runCli([...path, '--no-such-flag'])
    const what = `keymesh ${path.join(' ')} --no-such-flag`
    t.equal(r.code, 2, `${what}: exit 2`)
    t.equal(r.out, '', `${what}: nothing on stdout`)
    t.equal(r.err.split('\n').length, 2, `${what}: one line`)
    const code = path[0] === 'agent' ? 'AGENT_ERR_USAGE' : 'CP_ERR_USAGE'
    t.match(r.err, new RegExp(`^keymesh: .*; see keymesh ${path[0]} .*--help \\(${code}\\)\\n$`), `${what}: ${r.err}`)
  }
})

t.test('unknown flag, bad choice, conflict, missing value, missing or mistyped command: one line each', async (t) => {
  const cases: [string[], RegExp][] = [
    [['key', 'list', '--bogus'], /^keymesh: unknown argument: bogus; see keymesh key list --help \(CP_ERR_USAGE\)\n$/],
    [['key', 'create', 'k', '--type', 'aes'], /^keymesh: invalid values: .*"aes".*; see keymesh key create --help \(CP_ERR_USAGE\)\n$/],
    [['key', 'set', 'k', '--rotate-every', '1d', '--no-rotation'], /^keymesh: arguments rotate-every and rotation are mutually exclusive; see keymesh key set --help \(CP_ERR_USAGE\)\n$/],
    [['key', 'grant', 'k', '--service'], /^keymesh: missing required argument: allow; see keymesh key grant --help \(CP_ERR_USAGE\)\n$/],
    [['intention', 'allow', 'web'], /^keymesh: not enough non-option arguments.*; see keymesh intention allow --help \(CP_ERR_USAGE\)\n$/],
    [['key'], /^keymesh: not enough non-option arguments.*; see keymesh key --help \(CP_ERR_USAGE\)\n$/],
    [[], /^keymesh: name a command; see keymesh --help \(CP_ERR_USAGE\)\n$/],
    [['--cp', 'http://x', 'keyz'], /^keymesh: unknown command "keyz"; did you mean key\?; see keymesh --help \(CP_ERR_USAGE\)\n$/],
    [['agent', 'status', '--api'], /^keymesh: --api needs a value; see keymesh agent status --help \(AGENT_ERR_USAGE\)\n$/],
    [['key', 'list', '--cp'], /^keymesh: --cp needs a value; see keymesh key list --help \(CP_ERR_USAGE\)\n$/],
  ]
  for (const [argv, expected] of cases) {
    const r = await runCli(argv)
    t.equal(r.code, 2, `keymesh ${argv.join(' ')}: exit 2`)
    t.match(r.err, expected, `keymesh ${argv.join(' ')}`)
  }
})

t.test('only the named command is loaded; options before it are skipped with their values', async (t) => {
  t.equal(namedCommand(['key', 'list']), 'key')
  t.equal(namedCommand(['--cp', 'http://x', '--json', 'key', 'list']), 'key')
  t.equal(namedCommand(['--token-file', 'key', 'pair', 'list']), 'pair')
  t.equal(namedCommand(['--help']), undefined)
  t.equal(namedCommand(['keyz']), undefined)
  t.equal(namedCommand(['toString']), undefined, 'no inherited property is a command')
})

t.test('--help stays rich: usage, options and examples', async (t) => {
  const top = cliChild(['--help'])
  for (const name of Object.keys(COMMANDS)) t.match(top, new RegExp(`keymesh ${name}\\b`), `top-level help lists ${name}`)
  t.match(top, /--debug\s+Print the stack trace of an unexpected error/)
  const keyList = cliChild(['key', 'list', '--help'])
  t.match(keyList, /Options:/)
  t.match(keyList, /--type/)
})
