// protocol/ is pure: everything that crosses a wire or a disk is defined there,
// and nothing there may do I/O or keep time. This test reads the sources and
// fails on any import of an I/O module or any use of timers or process state.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { repoRoot } from '../kit/paths.js'
import { specifiers, stripComments } from '../kit/source-scan.js'

const root = repoRoot()
const srcDir = join(root, 'protocol', 'src')

// node:crypto computes; it opens no socket or file. Everything else from node is refused.
const ALLOWED_BARE = new Set(['node:crypto', '@stablelib/x25519', '@stablelib/chacha20poly1305'])
const FORBIDDEN_GLOBALS = /\b(setTimeout|setInterval|setImmediate|queueMicrotask|process\.(env|argv|exit|stdout|stderr|hrtime)|Date\.now|performance\.now|require\()/

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  )
}

t.test('the specifier scanner sees the import forms it must police', async (t) => {
  t.same(specifiers(`import x from 'node:fs'\nimport { y } from "ws"\nexport * from './a.js'\nawait import('net')\nimport 'pino'`),
    ['node:fs', 'ws', './a.js', 'net', 'pino'])
})

t.test('protocol/ imports nothing with I/O', async (t) => {
  const files = sources(srcDir)
  t.ok(files.length > 0, 'found protocol sources')
  for (const file of files) {
    const name = relative(root, file)
    const code = stripComments(readFileSync(file, 'utf8'))
    for (const spec of specifiers(code)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec)
        t.ok(target.startsWith(srcDir), `${name}: relative import ${spec} stays inside protocol/src`)
      } else {
        t.ok(ALLOWED_BARE.has(spec), `${name}: imports ${spec}, which is ${ALLOWED_BARE.has(spec) ? 'allowed' : 'not allowed in protocol/'}`)
      }
    }
    const m = FORBIDDEN_GLOBALS.exec(code)
    t.notOk(m, `${name} uses no timers, clocks or process state${m ? ` (found ${m[0]})` : ''}`)
  }
})
