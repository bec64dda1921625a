// The usage spool on disk: seqs that never repeat, torn tails truncated, damage
// mended (intact batches kept, the loss reported), the size bound, and compaction.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'

import { SEQ_FILE, SEQ_LEASE, SPOOL_FILE, UsageSpool } from '../../../agent/src/usage/spool.js'
import type { UsageEvent } from '../../../protocol/src/index.js'
import { codeOf, codeOfAsync } from '../../kit/errors.js'
import { FakeClock, FAKE_EPOCH } from '../../kit/fake-clock.js'

interface Logs {
  logger: Logger
  lines: Array<{ level: number; msg: string; code?: string; [k: string]: unknown }>
}

function capture(): Logs {
  const lines: Logs['lines'] = []
  return { logger: pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as Logs['lines'][number]) } }), lines }
}

function ev(i: number): UsageEvent {
  return { kind: 'conn.close', at: FAKE_EPOCH + i, peerService: 'api', keyVersion: 1, bytesIn: i, bytesOut: 2 * i, durationMs: 5 }
}

/** A spool line with a correct sum, as the format defines it. */
function line(body: string): string {
  return `${body} ${createHash('sha256').update(body).digest('hex').slice(0, 16)}\n`
}

function open(t: Test, dir: string, opts: { maxBytes?: number; logs?: Logs } = {}): UsageSpool {
  const logs = opts.logs ?? capture()
  const spool = UsageSpool.open({ stateDir: dir, logger: logs.logger, clock: new FakeClock(), maxBytes: opts.maxBytes ?? 1 << 20 })
  t.teardown(() => spool.close())
  return spool
}

const spoolPath = (dir: string) => join(dir, SPOOL_FILE)

t.test('a new spool is a 0600 file holding only its header, and seqs start at 1', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  t.equal(spool.nextSeq, 1)
  t.equal(statSync(spoolPath(dir)).mode & 0o777, 0o600, 'owner-only')
  t.equal(readFileSync(spoolPath(dir), 'utf8'), line('keymesh-usage-spool/1 1'))
  t.equal(spool.size, statSync(spoolPath(dir)).size, 'size is the file size')
  t.equal(await spool.append([ev(1)]), 1)
  t.equal(await spool.append([ev(2), ev(3)]), 2)
  t.same(await spool.read(2), { seq: 2, events: [ev(2), ev(3)] })
  t.equal(spool.size, statSync(spoolPath(dir)).size)
  t.equal(statSync(join(dir, SEQ_FILE)).mode & 0o777, 0o600, 'the seq lease is owner-only too')
  t.equal(readFileSync(join(dir, SEQ_FILE), 'utf8'), `${1 + SEQ_LEASE}\n`, 'the first append leases a block of seqs')
})

t.test('batches and acks survive reopening, and the next seq continues', async (t) => {
  const dir = t.testdir()
  const a = open(t, dir)
  for (let i = 1; i <= 4; i++) await a.append([ev(i)])
  t.ok(a.ack(2))
  t.notOk(a.ack(2), 'a duplicate ack is ignored')
  t.notOk(a.ack(99), 'an unknown ack is ignored')
  await a.close()
  const b = open(t, dir)
  t.same(b.unackedSeqs(), [1, 3, 4])
  t.equal(b.nextSeq, 5)
  t.same(await b.read(4), { seq: 4, events: [ev(4)] })
  t.equal(await codeOfAsync(b.read(2)), 'AGENT_ERR_SPOOL', 'an acked batch is gone')
})

t.test('a torn last record is truncated and the good batches survive', async (t) => {
  const cases: Array<[string, string]> = [
    ['a half-written batch', 'B 3 [{"kind":"conn.cl'],
    ['a batch whose bytes did not all reach the disk', line(`B 3 ${JSON.stringify([ev(3)])}`).replace('conn.close', 'conn\0\0\0\0\0')],
    ['a half-written ack', 'A 2 12ab'],
    ['zeros after a power loss', '\0'.repeat(300)],
  ]
  for (const [name, tail] of cases) {
    await t.test(name, async (t) => {
      const dir = t.testdir()
      const a = open(t, dir)
      await a.append([ev(1)])
      await a.append([ev(2)])
      await a.close()
      const good = statSync(spoolPath(dir)).size
      appendFileSync(spoolPath(dir), tail)
      const logs = capture()
      const b = open(t, dir, { logs })
      t.same(b.unackedSeqs(), [1, 2])
      t.same((await b.read(2)).events, [ev(2)])
      t.equal(statSync(spoolPath(dir)).size, good, 'the file is cut back to its last good record')
      t.match(logs.lines, [{ level: 40, truncatedBytes: Buffer.byteLength(tail), msg: /torn record/ }])
      t.equal(await b.append([ev(3)]), 3)
    })
  }
})

/** Flips one bit inside the line of batch `seq`. */
function damageBatch(dir: string, seq: number): Buffer {
  const bytes = readFileSync(spoolPath(dir))
  const at = bytes.indexOf(`B ${seq} `) + 10
  bytes[at] = bytes[at]! ^ 0x01
  writeFileSync(spoolPath(dir), bytes)
  return bytes
}

const unreadable = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith(`${SPOOL_FILE}.unreadable-`))

t.test('a damaged line mid-file costs that line only: intact batches are kept, the loss is reported in a batch of its own', async (t) => {
  for (const withLease of [true, false]) {
    await t.test(withLease ? 'with the seq lease' : 'without the seq lease', async (t) => {
      const dir = t.testdir()
      const a = open(t, dir)
      for (let i = 1; i <= 4; i++) await a.append([ev(i)])
      a.ack(1)
      await a.close()
      const damaged = damageBatch(dir, 2)
      const badLine = damaged.subarray(damaged.indexOf('B 2 '), damaged.indexOf('\n', damaged.indexOf('B 2 ')) + 1)
      if (!withLease) rmSync(join(dir, SEQ_FILE))
      const logs = capture()
      const b = open(t, dir, { logs })
      const report = withLease ? 1 + SEQ_LEASE : 5
      t.same(b.unackedSeqs(), [3, 4, report], 'batches 3 and 4 are kept with their seqs; the acked batch 1 is not')
      t.same(await b.read(3), { seq: 3, events: [ev(3)] }, 'with their events')
      t.same(await b.read(report), { seq: report, events: [], loss: { at: FAKE_EPOCH, lines: 1, bytes: badLine.length, batches: 1, seqs: [2] } }, 'the loss report names batch 2')
      t.equal(b.nextSeq, report + 1, 'seqs go on above every seq seen and the lease')
      t.same(b.repair, { recoveredBatches: 2, lostBatches: 1, damagedLines: 1, unreadableFile: join(dir, `${SPOOL_FILE}.unreadable-2026-01-01T00-00-00-000Z`) })
      t.equal(b.pendingLossReports, 1)
      t.same(unreadable(dir), [`${SPOOL_FILE}.unreadable-2026-01-01T00-00-00-000Z`])
      t.same(readFileSync(b.repair.unreadableFile!), badLine, 'the unreadable line is kept, byte for byte')
      t.equal(statSync(b.repair.unreadableFile!).mode & 0o777, 0o600)
      t.notOk(readdirSync(dir).some((f) => f.includes('.damaged-')), 'nothing is set aside')
      t.match(logs.lines, [{ level: 50, code: 'AGENT_ERR_USAGE_LOST', reason: /line 3 is damaged/, recoveredBatches: 2, lostBatches: 1, lostSeqs: [2], lossReportSeq: report }])
      t.equal(await b.append([ev(9)]), report + 1)
      b.ack(report)
      t.equal(b.pendingLossReports, 0, 'acked: delivered')
      await b.close()
      const c = open(t, dir)
      t.same(c.unackedSeqs(), [3, 4, report + 1], 'the mended spool reopens clean')
      t.same(c.repair, { recoveredBatches: 0, lostBatches: 0, damagedLines: 0, unreadableFile: undefined })
    })
  }
})

t.test('what a damaged line held is lost only if nothing else shows it was delivered', async (t) => {
  const dir = t.testdir()
  const a = open(t, dir)
  for (let i = 1; i <= 3; i++) await a.append([ev(i)])
  a.ack(2)
  await a.close()
  damageBatch(dir, 2)
  const logs = capture()
  const b = open(t, dir, { logs })
  const report = 1 + SEQ_LEASE
  t.same(b.unackedSeqs(), [1, 3, report])
  t.match((await b.read(report)).loss, { at: FAKE_EPOCH, lines: 1, batches: 0, seqs: [] }, 'its ack reads back: nothing lost, the damage still reported')
  t.match(logs.lines, [{ level: 40, code: 'AGENT_ERR_SPOOL', lostBatches: 0 }])
})

t.test('a checksummed record that breaks the rules is damage: the rest is recovered', async (t) => {
  const batch = (seq: number, events: unknown = [ev(seq)]) => line(`B ${seq} ${JSON.stringify(events)}`)
  const header = line('keymesh-usage-spool/1 1')
  const cases: Array<[string, string, RegExp, number[], { lines: number; batches: number; seqs: number[] }]> = [
    ['no header', batch(1) + batch(2), /no spool header/, [1, 2], { lines: 0, batches: 0, seqs: [] }],
    ['a seq that repeats', header + batch(2) + batch(2), /line 3 repeats batch 2/, [2, 3], { lines: 1, batches: 0, seqs: [] }],
    ['a seq that goes back', header + batch(3) + batch(2), /batch 2 on line 3 does not follow/, [2, 3], { lines: 0, batches: 0, seqs: [] }],
    ['events the schema refuses', header + batch(1, [{ kind: 'conn.open', at: -1 }]) + batch(2), /invalid events/, [2, 3], { lines: 1, batches: 1, seqs: [1] }],
    ['an unknown record', header + line('Z 1') + batch(1), /not a spool record/, [1, 2], { lines: 1, batches: 0, seqs: [] }],
    ['a batch without a number', header + line('B x []') + batch(2), /no valid number/, [2, 3], { lines: 1, batches: 1, seqs: [] }],
    ['a line of garbage', header + batch(1) + 'garbage\n' + batch(3), /line 3 is damaged/, [1, 3, 4], { lines: 1, batches: 1, seqs: [] }],
    ['a newer format', line('keymesh-usage-spool/2 1') + batch(1), /unsupported spool version/, [2], { lines: 2, batches: 1, seqs: [] }],
  ]
  for (const [name, content, reason, seqs, lost] of cases) {
    await t.test(name, async (t) => {
      const dir = t.testdir({ [SPOOL_FILE]: content })
      const logs = capture()
      const spool = open(t, dir, { logs })
      t.match(logs.lines, [{ code: /^AGENT_ERR_(SPOOL|USAGE_LOST)$/, reason }])
      t.same(spool.unackedSeqs(), seqs)
      const report = (await spool.read(seqs[seqs.length - 1]!)).loss
      if (lost.lines === 0) t.equal(report, undefined, 'every line read back: no loss to report')
      else t.match(report, lost)
      t.notOk(readdirSync(dir).some((f) => f.includes('.damaged-')))
    })
  }
})

t.test('spools an older agent set aside are taken in, once, and removed', async (t) => {
  const dir = t.testdir()
  const a = open(t, dir)
  for (let i = 1; i <= 3; i++) await a.append([ev(i)])
  await a.close()
  damageBatch(dir, 2)
  // What an older agent did: the damaged spool renamed, a new one above the lease.
  const legacy = `${SPOOL_FILE}.damaged-2025-12-31T00-00-00-000Z`
  const legacyBytes = readFileSync(spoolPath(dir))
  writeFileSync(join(dir, legacy), legacyBytes)
  writeFileSync(spoolPath(dir), line(`keymesh-usage-spool/1 ${1 + SEQ_LEASE}`) + line(`B ${1 + SEQ_LEASE} ${JSON.stringify([ev(7)])}`))
  const logs = capture()
  const b = open(t, dir, { logs })
  const report = 2 + SEQ_LEASE
  t.same(b.unackedSeqs(), [1, 3, 1 + SEQ_LEASE, report], 'its intact batches join the spool in seq order')
  t.same(await b.read(1), { seq: 1, events: [ev(1)] })
  t.match((await b.read(report)).loss, { lines: 1, batches: 1, seqs: [2] })
  t.notOk(existsSync(join(dir, legacy)), 'the set-aside file is gone: nothing is left behind')
  t.match(logs.lines, [{ code: 'AGENT_ERR_USAGE_LOST', takenIn: [legacy], recoveredBatches: 2 }])
  await b.close()

  // A crash between the new spool's write and the removal: the file is back, its loss is not reported twice.
  writeFileSync(join(dir, legacy), legacyBytes)
  const c = open(t, dir)
  t.same(c.unackedSeqs(), [1, 3, 1 + SEQ_LEASE, report], 'no second loss report, no batch twice')
  t.notOk(existsSync(join(dir, legacy)))
  await c.close()

  // Only set-aside files, no spool at all.
  rmSync(spoolPath(dir))
  writeFileSync(join(dir, legacy), legacyBytes)
  const d = open(t, dir)
  t.same(d.unackedSeqs().slice(0, 2), [1, 3])
  t.match((await d.read(d.unackedSeqs()[2]!)).loss, { seqs: [2] })
})

t.test('a batch that no longer reads back is let go with a report of its loss', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  await spool.append([ev(1)])
  await spool.append([ev(2)])
  const loc = Buffer.byteLength(line(`B 1 ${JSON.stringify([ev(1)])}`))
  const report = await spool.reportUnreadable(1, FAKE_EPOCH + 5)
  t.equal(report, 3)
  t.same(spool.unackedSeqs(), [2, 3])
  t.same(await spool.read(3), { seq: 3, events: [], loss: { at: FAKE_EPOCH + 5, lines: 1, bytes: loc, batches: 1, seqs: [1] } })
  t.equal(spool.pendingLossReports, 1)
  t.equal(await codeOfAsync(spool.reportUnreadable(1, 0)), 'AGENT_ERR_SPOOL', 'only an unacked batch')
  await spool.close()
  t.same(open(t, dir).unackedSeqs(), [2, 3], 'the report survives a restart')

  // A crash after the report was spooled and before the batch's ack line: its damaged line is found again at open.
  damageBatch(dir, 1)
  const text = readFileSync(spoolPath(dir), 'utf8')
  writeFileSync(spoolPath(dir), text.replace(/A 1 [0-9a-f]{16}\n/, ''))
  const logs = capture()
  const again = open(t, dir, { logs })
  t.same(again.unackedSeqs(), [2, 3], 'no second report of batch 1')
  t.equal(again.repair.damagedLines, 0)
  t.equal(unreadable(dir).length, 0)
})

t.test('an empty or header-less file starts over above the lease', async (t) => {
  const dir = t.testdir({ [SPOOL_FILE]: '', [SEQ_FILE]: '77\n' })
  const spool = open(t, dir)
  t.equal(spool.nextSeq, 77)
  t.equal(readFileSync(spoolPath(dir), 'utf8'), line('keymesh-usage-spool/1 77'))
})

t.test('a deleted spool cannot make a seq repeat: the lease is above every seq used', async (t) => {
  const dir = t.testdir()
  const a = open(t, dir)
  await a.append([ev(1)])
  await a.append([ev(2)])
  await a.close()
  rmSync(spoolPath(dir))
  const b = open(t, dir)
  t.ok(b.nextSeq > 2)
  t.equal(b.nextSeq, 1 + SEQ_LEASE)
})

t.test('a damaged lease file is logged and the spool alone decides', async (t) => {
  const dir = t.testdir()
  await open(t, dir).append([ev(1)])
  writeFileSync(join(dir, SEQ_FILE), 'not a number')
  const logs = capture()
  const spool = open(t, dir, { logs })
  t.match(logs.lines, [{ level: 50, code: 'AGENT_ERR_SPOOL', msg: /usage.seq is damaged/ }])
  t.equal(spool.nextSeq, 2)
  t.equal(await spool.append([ev(2)]), 2)
  t.equal(readFileSync(join(dir, SEQ_FILE), 'utf8'), `${2 + SEQ_LEASE}\n`, 'the lease is rewritten on the next append')
})

t.test('append refuses a batch that would pass maxBytes, writing nothing and using no seq', async (t) => {
  const dir = t.testdir()
  const header = Buffer.byteLength(line('keymesh-usage-spool/1 1'))
  const one = Buffer.byteLength(line(`B 1 ${JSON.stringify([ev(1)])}`))
  const spool = open(t, dir, { maxBytes: header + one })
  t.equal(await spool.append([ev(1)]), 1, 'exactly at the limit fits')
  t.equal(await spool.append([ev(2)]), null)
  t.equal(spool.nextSeq, 2, 'no seq spent on the refused batch')
  t.equal(statSync(spoolPath(dir)).size, header + one)
})

t.test('compaction keeps the unacked batches and the next seq, and only runs when worth it', async (t) => {
  const dir = t.testdir()
  const a = open(t, dir)
  for (let i = 1; i <= 4; i++) await a.append([ev(i)])
  t.notOk(a.compactable, 'nothing acked yet')
  a.ack(1)
  t.notOk(a.compactable, 'too little to reclaim')
  a.ack(2)
  a.ack(3)
  t.ok(a.compactable, 'most of the file is acked')
  const before = a.size
  await a.compact()
  t.ok(a.size < before, 'the file shrank')
  t.equal(a.size, statSync(spoolPath(dir)).size)
  t.same(await a.read(4), { seq: 4, events: [ev(4)] })
  t.equal(await a.append([ev(5)]), 5, 'appends go to the new file')
  await a.close()
  const b = open(t, dir)
  t.same(b.unackedSeqs(), [4, 5])
  t.equal(b.nextSeq, 6)
  for (const s of [4, 5]) b.ack(s)
  t.ok(b.compactable)
  await b.compact()
  t.equal(readFileSync(spoolPath(dir), 'utf8'), line('keymesh-usage-spool/1 6'), 'the header carries the next seq')
  await b.close()
  rmSync(join(dir, SEQ_FILE))
  t.equal(open(t, dir).nextSeq, 6, 'so the seq never goes back, even without the lease')
})

t.test('appends take their seqs at the call and resolve in that order; work queued together is one write', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  const order: number[] = []
  const appended = [1, 2, 3].map((i) => spool.append([ev(i)]).then((seq) => (order.push(seq as number), seq)))
  t.equal(spool.nextSeq, 4, 'seqs are taken at once')
  t.equal(spool.unackedCount, 0, 'but a batch is unacknowledged only once durable')
  t.same(await Promise.all(appended), [1, 2, 3])
  t.same(order, [1, 2, 3], 'resolved in seq order')
  t.equal(readFileSync(join(dir, SEQ_FILE), 'utf8'), `${3 + SEQ_LEASE}\n`, 'the three went out in one write: one lease for all')
  // An ack, a compaction and an append queued together keep their order on disk.
  spool.ack(1)
  const compacted = spool.compact()
  const fourth = spool.append([ev(4)])
  spool.ack(2)
  await compacted
  t.equal(await fourth, 4)
  await spool.idle()
  t.same(spool.unackedSeqs(), [3, 4])
  const again = open(t, dir)
  t.same(again.unackedSeqs(), [3, 4], 'the file says the same after a restart')
  t.same(await again.read(4), { seq: 4, events: [ev(4)] })
  t.equal(again.nextSeq, 5)
})

t.test('a write that fails fails every batch queued with it, and their seqs are taken again', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  mkdirSync(join(dir, SEQ_FILE))
  const codes = await Promise.all([spool.append([ev(1)]), spool.append([ev(2)])].map((p) => codeOfAsync(p)))
  t.same(codes, ['AGENT_ERR_SPOOL', 'AGENT_ERR_SPOOL'])
  t.equal(spool.nextSeq, 1, 'no seq was used')
  t.equal(readFileSync(spoolPath(dir), 'utf8'), line('keymesh-usage-spool/1 1'), 'nothing reached the file')
  rmSync(join(dir, SEQ_FILE), { recursive: true })
  t.equal(await spool.append([ev(3)]), 1)
})

t.test('a batch changed on disk after open no longer reads back', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  await spool.append([ev(1)])
  const bytes = readFileSync(spoolPath(dir))
  const at = bytes.indexOf('conn.close')
  bytes[at] = 0x43
  writeFileSync(spoolPath(dir), bytes)
  t.equal(await codeOfAsync(spool.read(1)), 'AGENT_ERR_SPOOL')
})

t.test('failed writes throw AGENT_ERR_SPOOL and never leave a bad line mid-file', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  await spool.append([ev(1)])
  spool.ack(1)
  await spool.compact()
  // The path is now a directory: reopening it for the next append fails.
  rmSync(spoolPath(dir))
  mkdirSync(spoolPath(dir))
  t.equal(await codeOfAsync(spool.append([ev(2)])), 'AGENT_ERR_SPOOL')
  t.equal(spool.nextSeq, 2, 'no seq used')
  t.equal(await codeOfAsync(spool.append([ev(2)])), 'AGENT_ERR_SPOOL', 'and it stays refused')
  t.equal(await codeOfAsync(spool.compact()), 'AGENT_ERR_SPOOL', 'the file cannot be replaced either')
})

t.test('a failed lease write refuses the batch', async (t) => {
  const dir = t.testdir()
  const spool = open(t, dir)
  mkdirSync(join(dir, SEQ_FILE))
  t.equal(await codeOfAsync(spool.append([ev(1)])), 'AGENT_ERR_SPOOL')
  t.equal(spool.unackedCount, 0)
  rmSync(join(dir, SEQ_FILE), { recursive: true })
  t.equal(await spool.append([ev(1)]), 1, 'seq 1 was never used, so it is used now')
})

t.test('a state dir that cannot be used is AGENT_ERR_SPOOL', async (t) => {
  const dir = join(t.testdir(), 'missing')
  t.equal(codeOf(() => UsageSpool.open({ stateDir: dir, logger: capture().logger, clock: new FakeClock(), maxBytes: 1000 })), 'AGENT_ERR_SPOOL')
  t.notOk(existsSync(dir))
})

t.test('after close, every operation throws AGENT_ERR_CLOSED', async (t) => {
  const spool = open(t, t.testdir())
  await spool.append([ev(1)])
  await spool.close()
  t.equal(await codeOfAsync(spool.append([ev(2)])), 'AGENT_ERR_CLOSED')
  t.equal(await codeOfAsync(spool.read(1)), 'AGENT_ERR_CLOSED')
  t.equal(await codeOfAsync(spool.compact()), 'AGENT_ERR_CLOSED')
  t.equal(await codeOfAsync(spool.close()), 'no error', 'closing twice is harmless')
})
