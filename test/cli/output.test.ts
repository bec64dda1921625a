import t from 'tap'

import { cpError } from '../../control-plane/src/index.js'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, isTimeField, localTime, printResult, renderJson, renderRecord, renderTable, runCommand } from '../../cli/output.js'

function sink() {
  const chunks: string[] = []
  return { write: (s: string) => { chunks.push(s) }, get text() { return chunks.join('') } }
}

t.test('--json prints exactly one JSON document, newline-terminated', async (t) => {
  const value = { keys: [{ name: 'a', versions: [1, 2] }], ok: true }
  const out = sink()
  printResult(out, value, { json: true, columns: ['name'] })
  t.ok(out.text.endsWith('}\n'))
  t.equal(out.text.split('\n').filter((l) => l === '').length, 1, 'one trailing newline')
  t.same(JSON.parse(out.text), value)
  t.equal(renderJson(undefined), 'null\n')
  t.equal(renderJson([]), '[]\n')
})

t.test('an array of records is an aligned table in the given column order', async (t) => {
  const rows = [
    { name: 'payments', type: 'aead', primary: 3, extra: 'ignored' },
    { name: 'k', type: 'x25519', primary: null },
    { name: 'tags', primary: 1, type: undefined },
  ]
  t.equal(renderTable(rows, ['name', { key: 'primary', header: 'PRIMARY VERSION' }, 'type']), [
    'NAME      PRIMARY VERSION  TYPE',
    'payments  3                aead',
    'k         -                x25519',
    'tags      1                -',
    '',
  ].join('\n'))
  t.equal(renderTable([], ['name']), '(none)\n')
})

t.test('cells stay on one line whatever the value', async (t) => {
  const when = new Date('2026-01-02T03:04:05Z')
  const table = renderTable([{ a: ['x', 'y'], b: { n: 1 }, c: 'two\nlines\u001b[2J', d: when, e: [], f: [{ p: 1 }], g: '', h: false }], ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'])
  t.equal(table.split('\n')[1], 'x,y  {"n":1}  two lines [2J  2026-01-02T03:04:05.000Z  -  {"p":1}  -  false')
})

t.test('a single record is key: value lines', async (t) => {
  t.equal(renderRecord({ name: 'payments', primary: 3, rotation: null }), 'name:     payments\nprimary:  3\nrotation: -\n')
  t.equal(renderRecord({ a: 1, b: 2 }, ['b', { key: 'a', header: 'first' }]), 'b:     2\nfirst: 1\n')
  t.equal(renderRecord({}), '')
})

t.test('printResult picks the form from the value', async (t) => {
  const a = sink()
  printResult(a, [{ name: 'x', type: 'aead' }, { name: 'y', state: 'on' }])
  t.equal(a.text, 'NAME  TYPE  STATE\nx     aead  -\ny     -     on\n', 'columns default to the keys seen, in order')
  const b = sink()
  printResult(b, [1, 'two'])
  t.equal(b.text, 'VALUE\n1\ntwo\n')
  const b2 = sink()
  printResult(b2, [])
  t.equal(b2.text, '(none)\n')
  const c = sink()
  printResult(c, { ok: true }, { json: false })
  t.equal(c.text, 'ok: true\n')
  const d = sink()
  printResult(d, 'done')
  printResult(d, undefined)
  t.equal(d.text, 'done\n')
})

t.test('runCommand returns the command\'s exit code, 0 by default', async (t) => {
  t.equal(await runCommand(async () => {}), EXIT_OK)
  t.equal(await runCommand(async () => 3), 3)
})

t.test('a KeymeshError is one line with its code and no stack; usage errors exit 2', async (t) => {
  const err = sink()
  t.equal(await runCommand(async () => { throw cpError('CP_ERR_NOT_FOUND', 'no key named x') }, { stderr: err, debug: true }), EXIT_FAILURE)
  t.equal(err.text, 'keymesh: not found: no key named x (CP_ERR_NOT_FOUND)\n')
  const usage = sink()
  t.equal(await runCommand(async () => { throw cpError('CP_ERR_USAGE', 'name the control plane with --cp URL or KEYMESH_CP') }, { stderr: usage }), EXIT_USAGE)
  t.equal(usage.text.split('\n').length, 2)
  t.notMatch(usage.text, /\s+at /)
})

t.test('an unexpected error shows its stack only with --debug', async (t) => {
  const quiet = sink()
  t.equal(await runCommand(async () => { throw new TypeError('x is undefined\nsecond line') }, { stderr: quiet }), EXIT_FAILURE)
  t.equal(quiet.text, 'keymesh: unexpected error: x is undefined second line (run with --debug for details)\n')
  const loud = sink()
  await runCommand(async () => { throw new Error('boom') }, { stderr: loud, debug: true })
  t.match(loud.text, /^keymesh: unexpected error: boom\nError: boom\n\s+at /)
  const odd = sink()
  await runCommand(async () => { throw 'a string' }, { stderr: odd, debug: true })
  t.equal(odd.text, 'keymesh: unexpected error: a string\n')
})

t.test('stderr defaults to the process stream', async (t) => {
  const original = process.stderr.write
  let captured = ''
  process.stderr.write = ((s: string) => { captured += s; return true }) as typeof process.stderr.write
  try {
    await runCommand(async () => { throw cpError('CP_ERR_INTERNAL') })
  } finally {
    process.stderr.write = original
  }
  t.equal(captured, 'keymesh: internal error (CP_ERR_INTERNAL)\n')
})

t.test('moments are ISO 8601: UTC in JSON, local time with its offset for people; durations stay numbers', async (t) => {
  const at = Date.UTC(2026, 11, 7, 20, 30, 0)
  const answer = { state: 'scheduled-destruction', destroyAt: at, rotationPeriodMs: 86_400_000, versions: [{ notAfter: at, previousNotAfter: null }], at: 5 }
  const json = sink()
  printResult(json, answer, { json: true })
  t.same(JSON.parse(json.text), { state: 'scheduled-destruction', destroyAt: '2026-12-07T20:30:00.000Z', rotationPeriodMs: 86_400_000, versions: [{ notAfter: '2026-12-07T20:30:00.000Z', previousNotAfter: null }], at: 5 })
  const tz = process.env['TZ']
  t.teardown(() => { if (tz === undefined) delete process.env['TZ']; else process.env['TZ'] = tz })
  process.env['TZ'] = 'Asia/Kolkata'
  t.equal(localTime(at), '2026-12-08T02:00:00.000+05:30')
  const human = sink()
  printResult(human, { destroyAt: at })
  t.equal(human.text, 'destroyAt: 2026-12-08T02:00:00.000+05:30\n')
  process.env['TZ'] = 'America/New_York'
  t.equal(localTime(at), '2026-12-07T15:30:00.000-05:00')
  process.env['TZ'] = 'UTC'
  t.equal(localTime(at), '2026-12-07T20:30:00.000Z')
  t.ok(isTimeField('lastSeenAt') && isTimeField('notAfter') && isTimeField('previousNotAfter'))
  t.notOk(isTimeField('at') || isTimeField('rotationPeriodMs') || isTimeField('format'))
})
