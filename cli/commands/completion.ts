// `keymesh completion bash|zsh`: prints a shell script that completes keymesh's
// commands and options. The script asks keymesh itself (`--get-yargs-completions`,
// yargs' completion hook, enabled in main.ts), so it never goes stale.
import type { Argv, CommandModule } from 'yargs'

import { run, type CliContext, type GlobalArgs } from '../context.js'

interface CompletionArgs extends GlobalArgs { shell: 'bash' | 'zsh' }

export const SHELLS = ['bash', 'zsh'] as const

const SCRIPTS: Readonly<Record<CompletionArgs['shell'], string>> = {
  bash: `# keymesh completion for bash: source it, or save it as
#   /etc/bash_completion.d/keymesh  (or ~/.local/share/bash-completion/completions/keymesh)
_keymesh_completions() {
  local cur_word type_list
  cur_word="\${COMP_WORDS[COMP_CWORD]}"
  type_list=$(keymesh --get-yargs-completions "\${COMP_WORDS[@]}")
  COMPREPLY=( $(compgen -W "\${type_list}" -- "\${cur_word}") )
  return 0
}
complete -o bashdefault -o default -F _keymesh_completions keymesh
`,
  zsh: `#compdef keymesh
# keymesh completion for zsh: source it, or save it as _keymesh in a directory of $fpath
_keymesh_completions() {
  local reply
  local si=$IFS
  IFS=$'\\n' reply=($(COMP_CWORD="$((CURRENT-1))" COMP_LINE="$BUFFER" COMP_POINT="$CURSOR" keymesh --get-yargs-completions "\${words[@]}"))
  IFS=$si
  _describe 'values' reply
}
compdef _keymesh_completions keymesh
`,
}

export function completionCommand(ctx: CliContext): CommandModule<GlobalArgs, CompletionArgs> {
  return {
    command: 'completion <shell>',
    describe: 'Print a shell completion script for keymesh',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('shell', { choices: SHELLS, demandOption: true, describe: 'The shell to complete in' })
        .example('source <($0 completion bash)', 'complete keymesh in this bash session')
        .example('$0 completion zsh > "${fpath[1]}/_keymesh"', 'install for zsh') as unknown as Argv<CompletionArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        ctx.stdout.write(SCRIPTS[args.shell])
      }),
  }
}
