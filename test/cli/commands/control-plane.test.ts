// `keymesh control-plane`: the first thing it prints is where it answers and which
// files it made; a data directory that is a file is named as such, with its own code.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { runCli, runControlPlaneCli } from '../../kit/cli.js'
import { until } from '../../kit/wait.js'

t.test('a started control plane says where it answers and which files it wrote', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const cp = await runControlPlaneCli(dir, {})
  const line = await until(() => /^keymesh: control plane at .*\n/m.exec(cp.err())?.[0], 'the start line')
  t.match(line, new RegExp(`^keymesh: control plane at (http://127\\.0\\.0\\.1:\\d+) \\(export KEYMESH_CP=\\1\\); agents pin ${join(dir, 'identity.pub')}; admin token in ${join(dir, 'admin.token')}\\n$`))
  t.equal(await cp.stop(), 0)
})

t.test('a data directory that is a file: one line naming it, CP_ERR_DATA_DIR', async (t) => {
  const file = join(t.testdir(), 'not-a-dir')
  writeFileSync(file, 'x')
  const r = await runCli(['control-plane', '--listen', '127.0.0.1:0', '--data-dir', file])
  t.equal(r.code, 1)
  t.equal(r.err, `keymesh: the data directory cannot be used: ${file} is not a directory; give --data-dir a directory (it is created if missing) (CP_ERR_DATA_DIR)\n`)
  t.notMatch(r.err, /unexpected|--debug/)
})
