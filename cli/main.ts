// The keymesh CLI. Parses argv with yargs and dispatches; the packages never read
// process.argv or process.env themselves (configuration is merged here, at the edge).
import yargs from 'yargs'

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0
  await yargs(argv)
    .scriptName('keymesh')
    .usage('$0 <command> [options]\n\nkeymesh: a key management service with sidecar agents.')
    .demandCommand(1, 'Name a command; see the list above.')
    .strict()
    .help()
    .alias('h', 'help')
    .version()
    .fail((msg, err, y) => {
      if (err) throw err
      process.stderr.write(`${y.help()}\n\nkeymesh: ${msg}\n`)
      exitCode = 2
    })
    .parseAsync()
  return exitCode
}
