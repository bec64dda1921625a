import t from 'tap'

import { cliChild, runCli } from '../../kit/cli.js'

t.test('completion bash|zsh prints a script that asks keymesh for its words', async (t) => {
  const bash = await runCli(['completion', 'bash'])
  t.equal(bash.code, 0)
  t.match(bash.out, /complete -o bashdefault -o default -F _keymesh_completions keymesh\n$/)
  t.match(bash.out, /keymesh --get-yargs-completions/)
  const zsh = await runCli(['completion', 'zsh'])
  t.match(zsh.out, /^#compdef keymesh\n[\s\S]*compdef _keymesh_completions keymesh\n$/)
  const fish = await runCli(['completion', 'fish'])
  t.equal(fish.code, 2, 'an unknown shell is a usage error')
  t.match(fish.err, /^keymesh: invalid values: .*"fish".*\(CP_ERR_USAGE\)\n$/)
})

t.test('the hook the scripts call completes commands and subcommands', async (t) => {
  const top = cliChild(['--get-yargs-completions', 'keymesh', '']).split('\n')
  for (const c of ['intention', 'join-token', 'completion']) t.ok(top.includes(c), `offers ${c}`)
  const sub = cliChild(['--get-yargs-completions', 'keymesh', 'intention', '']).split('\n')
  t.same(sub.filter((w) => ['allow', 'deny', 'remove', 'list'].includes(w)), ['allow', 'deny', 'remove', 'list'])
})
