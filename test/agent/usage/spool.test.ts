// The usage spool on disk: seqs that never repeat, torn tails truncated, damage moved
// aside rather than discarded, the size bound, and compaction.
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
  t.same(spool.read(2), { seq: 2, events: [ev(2), ev(3)] })
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
  t.same(b.read(4), { seq: 4, events: [ev(4)] })
  t.equal(codeOf(() => b.read(2)), 'AGENT_ERR_SPOOL', 'an acked batch is gone')
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
      t.same(b.read(2).events, [ev(2)])
      t.equal(statSync(spoolPath(dir)).size, good, 'the file is cut back to its last good record')
      t.match(logs.lines, [{ level: 40, truncatedBytes: Buffer.byteLength(tail), msg: /torn record/ }])
      t.equal(await b.append([ev(3)]), 3)
    })
  }
})

t.test('mid-file corruption moves the spool aside, logs AGENT_ERR_SPOOL, and seqs continue', async (t) => {
  for (const withLease of [true, false]) {
    await t.test(withLease ? 'with the seq lease' : 'without the seq lease', async (t) => {
      const dir = t.testdir()
      const a = open(t, dir)
      for (let i = 1; i <= 3; i++) await a.append([ev(i)])
      await a.close()
      const bytes = readFileSync(spoolPath(dir))
      const flipAt = bytes.indexOf('B 2 ') + 10
      bytes[flipAt] = bytes[flipAt]! ^ 0x01
      writeFileSync(spoolPath(dir), bytes)
      if (!withLease) rmSync(join(dir, SEQ_FILE))
      const logs = capture()
      const b = open(t, dir, { logs })
      const aside = readdirSync(dir).filter((f) => f.startsWith(`${SPOOL_FILE}.damaged-`))
      t.same(aside, [`${SPOOL_FILE}.damaged-2026-01-01T00-00-00-000Z`], 'renamed with the time it was found')
      t.same(readFileSync(join(dir, aside[0]!)), bytes, 'the damaged data is kept, byte for byte')
      t.match(logs.lines, [{ level: 50, code: 'AGENT_ERR_SPOOL', reason: /line 3 is damaged/, movedTo: join(dir, aside[0]!) }])
      t.equal(b.unackedCount, 0, 'the new spool starts empty')
      t.ok(b.nextSeq > 3, `seq continues above every seq seen (${b.nextSeq})`)
      if (withLease) t.equal(b.nextSeq, 1 + SEQ_LEASE, 'the lease bounds every seq ever used')
      else t.equal(b.nextSeq, 4, 'without the lease, the good records decide')
      t.equal(await b.append([ev(9)]), b.nextSeq - 1)
    })
  }
})

t.test('a checksummed record that breaks the rules is damage, not a torn tail', async (t) => {
  const batch = (seq: number, events: unknown = [ev(seq)]) => line(`B ${seq} ${JSON.stringify(events)}`)
  const cases: Array<[string, string, RegExp]> = [
    ['a newer format', line('keymesh-usage-spool/2 1') + batch(1), /unsupported spool version/],
    ['no header', batch(1) + batch(2), /no spool header/],
    ['a seq that repeats', line('keymesh-usage-spool/1 1') + batch(2) + batch(2), /batch 2 on line 3 does not follow/],
    ['a seq that goes back', line('keymesh-usage-spool/1 1') + batch(3) + batch(2), /batch 2 on line 3 does not follow/],
    ['events the schema refuses', line('keymesh-usage-spool/1 1') + batch(1, [{ kind: 'conn.open', at: -1 }]), /invalid events/],
    ['an unknown record', line('keymesh-usage-spool/1 1') + line('Z 1'), /not a spool record/],
    ['a record without a number', line('keymesh-usage-spool/1 1') + line('A x'), /no valid number/],
  ]
  for (const [name, content, reason] of cases) {
    await t.test(name, async (t) => {
      const dir = t.testdir({ [SPOOL_FILE]: content })
      const logs = capture()
      const spool = open(t, dir, { logs })
      t.match(logs.lines, [{ code: 'AGENT_ERR_SPOOL', reason }])
      t.equal(readdirSync(dir).filter((f) => f.includes('.damaged-')).length, 1)
      t.equal(spool.unackedCount, 0)
    })
  }
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
  t.same(a.read(4), { seq: 4, events: [ev(4)] })
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
  t.same(again.read(4), { seq: 4, events: [ev(4)] })
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
  t.equal(codeOf(() => spool.read(1)), 'AGENT_ERR_SPOOL')
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
  t.equal(codeOf(() => spool.read(1)), 'AGENT_ERR_CLOSED')
  t.equal(await codeOfAsync(spool.compact()), 'AGENT_ERR_CLOSED')
  t.equal(await codeOfAsync(spool.close()), 'no error', 'closing twice is harmless')
})
