// Usage reports: batching by count and by time, spool-before-send, resend after an
// outage or a crash with the same seqs and events, acks, the in-flight window, and
// the bounded spool's warnings. End-to-end delivery against a real control plane is
// the agent's integration test.
import t, { type Test } from 'tap'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'

import { ACK_TIMEOUT_MS, UsageReporter, type UsageReporterOptions } from '../../../agent/src/usage/reporter.js'
import { SEQ_FILE, SPOOL_FILE } from '../../../agent/src/usage/spool.js'
import { encodeLine, headerLine } from '../../../agent/src/usage/spool-format.js'
import { MAX_USAGE_EVENTS, type UsageEvent } from '../../../protocol/src/index.js'
import { codeOf } from '../../kit/errors.js'
import { FakeClock, FAKE_EPOCH } from '../../kit/fake-clock.js'

type LogLine = { level: number; msg: string; code?: string; [k: string]: unknown }
type Batch = { seq: number; events: UsageEvent[] }

function ev(i: number): UsageEvent {
  return { kind: 'conn.close', at: FAKE_EPOCH + i, peerService: 'api', keyVersion: 2, bytesIn: i, bytesOut: 3 * i, durationMs: 40 }
}

interface Harness {
  r: UsageReporter
  clock: FakeClock
  /** Every batch send() accepted, in order. */
  sent: Batch[]
  /** How many times send() was called, accepted or not. */
  calls: number
  up: boolean
  logs: LogLine[]
  dir: string
}

function harness(t: Test, o: { dir?: string; clock?: FakeClock; crash?: boolean } & Partial<Omit<UsageReporterOptions, 'clock'>> = {}): Harness {
  const logs: LogLine[] = []
  const logger: Logger = pino({ level: 'debug' }, { write: (s: string) => { logs.push(JSON.parse(s) as LogLine) } })
  const { dir, clock, crash, ...options } = o
  const h = { sent: [], calls: 0, up: true, logs, clock: clock ?? new FakeClock(), dir: dir ?? t.testdir() } as unknown as Harness
  h.r = UsageReporter.open({
    stateDir: h.dir,
    clock: h.clock,
    logger,
    maxSpoolBytes: 1 << 20,
    flushMs: 1000,
    send: (b) => {
      h.calls++
      if (!h.up) return false
      h.sent.push(b)
      return true
    },
    ...options,
  })
  // A crashed reporter is never closed: close() would flush and compact behind the
  // back of its successor. Its file descriptor goes with the test process.
  if (crash !== true) t.teardown(() => h.r.close())
  return h
}

const seqs = (batches: Batch[]) => batches.map((b) => b.seq)

/** Records event i as a batch of its own for each i in from..to, each spooled before the next. */
async function spoolEach(h: Harness, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) {
    h.r.record(ev(i))
    h.r.flush()
    await h.r.idle()
  }
}
const warnings = (logs: LogLine[], code: string) => logs.filter((l) => l.code === code)

t.test('forms a batch as soon as 128 events are pending', async (t) => {
  const h = harness(t)
  for (let i = 0; i < MAX_USAGE_EVENTS; i++) h.r.record(ev(i))
  t.equal(h.clock.pendingTimers, 0, 'the batch formed without waiting for the timer')
  await h.r.idle()
  t.same(seqs(h.sent), [1], 'and is sent once spooled')
  t.equal(h.sent[0]!.events.length, MAX_USAGE_EVENTS)
  h.r.record(ev(500))
  t.equal(h.sent.length, 1, 'the next event waits for the next batch')
  t.match(h.r.stats, { pendingEvents: 1, unackedBatches: 1, nextSeq: 2 })
})

t.test('forms a batch flushMs after the first pending event', async (t) => {
  const h = harness(t)
  h.r.record(ev(1))
  h.clock.advance(600)
  await h.r.idle()
  h.r.record(ev(2))
  h.clock.advance(399)
  await h.r.idle()
  t.equal(h.sent.length, 0, 'not before flushMs')
  h.clock.advance(1)
  await h.r.idle()
  t.same(h.sent, [{ seq: 1, events: [ev(1), ev(2)] }], 'the events as recorded, in order')
  t.equal(h.clock.pendingTimers, 1, 'no flush timer while nothing is pending: only the ack timeout of the sent batch')
  h.clock.advance(5000)
  await h.r.idle()
  t.equal(h.sent.length, 1, 'no empty batches')
})

t.test('an invalid event is a programming error and throws', async (t) => {
  const h = harness(t)
  t.equal(codeOf(() => h.r.record({ kind: 'conn.explode' } as unknown as UsageEvent)), 'PROTO_ERR_MESSAGE_FIELD')
  t.equal(codeOf(() => h.r.record({ ...ev(1), reason: 'free text with a secret' })), 'PROTO_ERR_MESSAGE_FIELD', 'a reason is an error code, never free text')
  t.equal(h.r.stats.pendingEvents, 0)
})

t.test('a recorded event cannot be changed afterwards by its caller', async (t) => {
  const h = harness(t)
  const e = ev(1)
  h.r.record(e)
  e.bytesIn = 999
  h.r.flush()
  await h.r.idle()
  t.equal(h.sent[0]!.events[0]!.bytesIn, 1)
})

t.test('each batch is in the spool, fsync\'d, before it is sent', async (t) => {
  const dir = t.testdir()
  const seen: string[] = []
  const h = harness(t, {
    dir,
    send: (b) => {
      seen.push(readFileSync(join(dir, SPOOL_FILE), 'utf8').includes(`B ${b.seq} `) ? 'spooled' : 'not spooled')
      return true
    },
  })
  h.r.record(ev(1))
  h.r.flush()
  t.same(seen, [], 'not sent while the write is under way: a crash now loses a batch nobody saw')
  await h.r.idle()
  h.r.record(ev(2))
  h.r.flush()
  await h.r.idle()
  t.same(seen, ['spooled', 'spooled'])
})

t.test('a crash after the write and before the send: the next run sends the batch, with its seq', async (t) => {
  const dir = t.testdir()
  const clock = new FakeClock()
  const a = harness(t, { dir, clock, crash: true })
  a.up = false
  a.r.record(ev(1))
  a.r.flush()
  await a.r.idle()
  t.equal(a.sent.length, 0)
  const b = harness(t, { dir, clock })
  b.r.resend()
  await b.r.idle() // read back from the file, off the event loop
  t.same(b.sent, [{ seq: 1, events: [ev(1)] }])
})

t.test('while send() returns false batches stay spooled, and resend() delivers them in order', async (t) => {
  const h = harness(t)
  h.up = false
  for (let i = 1; i <= 3; i++) {
    h.r.record(ev(i))
    h.r.flush()
    await h.r.idle()
  }
  t.equal(h.calls, 1, 'after one refusal nothing more is tried until resend()')
  t.equal(h.r.stats.unackedBatches, 3)
  h.up = true
  h.r.resend()
  t.same(seqs(h.sent), [1, 2, 3])
  t.same(h.sent.map((b) => b.events[0]!.bytesIn), [1, 2, 3], 'each seq with its own events')
})

t.test('acked batches are not resent; duplicate and unknown acks are harmless', async (t) => {
  const h = harness(t)
  for (let i = 1; i <= 3; i++) {
    h.r.record(ev(i))
    h.r.flush()
    await h.r.idle()
  }
  h.r.ack(2)
  await h.r.idle()
  for (const seq of [2, 99, 0, -1, Number.NaN, 1.5]) h.r.ack(seq)
  await h.r.idle()
  t.equal(h.r.stats.unackedBatches, 2)
  h.sent.length = 0
  h.r.resend()
  t.same(seqs(h.sent), [1, 3])
  h.r.ack(1)
  await h.r.idle()
  h.r.ack(3)
  await h.r.idle()
  t.match(h.r.stats, { unackedBatches: 0, nextSeq: 4 })
})

t.test('after a crash, a new reporter resends every unacked batch with the same seq and events', async (t) => {
  const dir = t.testdir()
  const clock = new FakeClock()
  const a = harness(t, { dir, clock, crash: true })
  for (let i = 1; i <= 4; i++) {
    a.r.record(ev(i))
    a.r.flush()
    await a.r.idle()
  }
  a.r.ack(1)
  await a.r.idle()
  a.r.ack(3)
  await a.r.idle()
  a.r.record(ev(5)) // pending, never spooled: lost with the process, and no seq was spent on it
  // Crash: no close(). A new process opens the same state dir.
  const b = harness(t, { dir, clock })
  t.match(b.logs, [{ msg: /usage batches from an earlier run/, unackedBatches: 2 }])
  t.equal(b.r.stats.nextSeq, 5)
  b.r.resend()
  await b.r.idle()
  t.same(b.sent, a.sent.filter((x) => x.seq === 2 || x.seq === 4), 'same seqs, same events')
  b.r.record(ev(6))
  b.r.flush()
  await b.r.idle()
  t.same(seqs(b.sent), [2, 4, 5], 'new batches continue the seq')
})

t.test('the seq persists across close and reopen and never repeats, even after compaction', async (t) => {
  const dir = t.testdir()
  const used: number[] = []
  for (let run = 0; run < 3; run++) {
    const h = harness(t, { dir })
    for (let i = 0; i < 2; i++) {
      h.r.record(ev(i))
      h.r.flush()
      await h.r.idle()
    }
    for (const b of h.sent) h.r.ack(b.seq)
    await h.r.idle()
    used.push(...seqs(h.sent))
    await h.r.close()
    t.equal(statSync(join(dir, SPOOL_FILE)).size, 41, `run ${run}: everything acked, so the spool is compacted to its header`)
  }
  t.same(used, [1, 2, 3, 4, 5, 6])
  rmSync(join(dir, SPOOL_FILE))
  const h = harness(t, { dir })
  t.ok(h.r.stats.nextSeq > 6, 'even a deleted spool does not bring an old seq back')
})

t.test('compaction runs at most once per flush interval', async (t) => {
  const dir = t.testdir()
  const h = harness(t, { dir })
  const size = () => statSync(join(dir, SPOOL_FILE)).size
  h.r.record(ev(1))
  h.r.flush()
  await h.r.idle()
  h.r.ack(1)
  await h.r.idle()
  const compacted = size()
  t.equal(h.r.stats.spoolBytes, compacted, 'the first all-acked moment compacts at once')
  h.r.record(ev(2))
  h.r.flush()
  await h.r.idle()
  h.r.ack(2)
  await h.r.idle()
  t.ok(size() > compacted, 'the next one waits')
  t.equal(h.clock.pendingTimers, 1)
  h.clock.advance(1000)
  await h.r.idle()
  t.equal(size(), compacted, 'and runs when the interval is up')
})

t.test('a full spool drops events with one warning per episode, and recovers after acks', async (t) => {
  const dir = t.testdir()
  // Room for the header and two one-event batches, not three.
  const batchBytes = Buffer.byteLength(`B 1 ${JSON.stringify([ev(1)])} ${'0'.repeat(16)}\n`)
  const h = harness(t, { dir, maxSpoolBytes: 41 + 2 * batchBytes + 10 })
  h.up = false
  for (let i = 1; i <= 6; i++) {
    h.r.record(ev(i))
    h.r.flush()
    await h.r.idle()
  }
  t.match(h.r.stats, { unackedBatches: 2, dropped: 4, nextSeq: 3 })
  const full = warnings(h.logs, 'AGENT_ERR_SPOOL_FULL')
  t.equal(full.length, 1, 'one warning for the whole episode')
  t.match(full[0], { level: 40, msg: /^usage spool full \(\d+ bytes\): usage events are being dropped until the control plane acknowledges batches$/ })
  h.up = true
  h.r.resend()
  h.r.ack(1)
  await h.r.idle()
  h.r.ack(2)
  await h.r.idle()
  h.r.record(ev(7))
  h.r.flush()
  await h.r.idle()
  t.same(seqs(h.sent), [1, 2, 3], 'a dropped batch never spent a seq')
  t.match(h.logs.at(-1), { level: 40, dropped: 4, msg: /room again: 4 usage event/ })
  h.up = false
  for (let i = 8; i <= 12; i++) {
    h.r.record(ev(i))
    h.r.flush()
    await h.r.idle()
  }
  t.equal(warnings(h.logs, 'AGENT_ERR_SPOOL_FULL').length, 2, 'a new episode warns again')
})

t.test('at most maxInFlight batches are unacked on the wire, more as acks arrive', async (t) => {
  const h = harness(t, { maxInFlight: 2 })
  h.up = false
  await spoolEach(h, 1, 5)
  h.up = true
  h.r.resend()
  t.same(seqs(h.sent), [1, 2])
  h.r.ack(1)
  await h.r.idle()
  t.same(seqs(h.sent), [1, 2, 3])
  h.r.ack(3)
  await h.r.idle()
  h.r.ack(2)
  await h.r.idle()
  t.same(seqs(h.sent), [1, 2, 3, 4, 5])
})

t.test('a batch not acked within the ack timeout is sent again', async (t) => {
  const h = harness(t)
  h.r.record(ev(1))
  h.r.flush()
  await h.r.idle()
  h.clock.advance(ACK_TIMEOUT_MS)
  await h.r.idle()
  h.r.record(ev(2))
  h.r.flush()
  await h.r.idle()
  t.same(seqs(h.sent), [1, 1, 2], 'the control plane dedups the second copy of 1')
  t.same(h.sent[1], h.sent[0])
})

t.test('an idle agent resends an unacked batch when the ack timeout passes, once per timeout', async (t) => {
  const h = harness(t)
  h.r.record(ev(1))
  h.r.flush()
  await h.r.idle()
  h.clock.advance(ACK_TIMEOUT_MS - 1)
  await h.r.idle()
  t.same(seqs(h.sent), [1], 'not before the timeout')
  h.clock.advance(1)
  await h.r.idle()
  t.same(seqs(h.sent), [1, 1], 'sent again with no other event')
  h.r.ack(1)
  await h.r.idle()
  h.clock.advance(2 * ACK_TIMEOUT_MS)
  await h.r.idle()
  t.same(seqs(h.sent), [1, 1], 'an acked batch is never sent again')
})

t.test('send() throwing counts as the session being down', async (t) => {
  let fail = true
  const got: Batch[] = []
  const h = harness(t, {
    send: (b) => {
      if (fail) throw new Error('socket went away')
      got.push(b)
      return true
    },
  })
  h.r.record(ev(1))
  t.doesNotThrow(() => h.r.flush())
  await h.r.idle()
  t.match(h.logs, [{ level: 40, seq: 1, msg: /resent when the control session reconnects/ }])
  fail = false
  h.r.resend()
  t.same(seqs(got), [1])
})

t.test('spool write failures drop the batch with an error, never throw', async (t) => {
  const dir = t.testdir()
  const h = harness(t, { dir })
  mkdirSync(join(dir, SEQ_FILE)) // the seq lease cannot be written
  h.r.record(ev(1))
  t.doesNotThrow(() => h.clock.advance(1000))
  await h.r.idle()
  t.match(h.r.stats, { dropped: 1, unackedBatches: 0, nextSeq: 1 })
  t.match(warnings(h.logs, 'AGENT_ERR_SPOOL'), [{ level: 50, msg: /could not be written/ }])
  t.equal(h.sent.length, 0)
  rmSync(join(dir, SEQ_FILE), { recursive: true })
  h.r.record(ev(2))
  h.r.flush()
  await h.r.idle()
  t.same(seqs(h.sent), [1], 'seq 1 was never used, so the next batch gets it')
})

t.test('a compaction failure is logged and retried after a later ack', async (t) => {
  const dir = t.testdir()
  const h = harness(t, { dir })
  h.r.record(ev(1))
  h.r.flush()
  await h.r.idle()
  // The spool's name is taken by a directory: the file cannot be replaced.
  rmSync(join(dir, SPOOL_FILE))
  mkdirSync(join(dir, SPOOL_FILE))
  h.r.ack(1)
  await h.r.idle()
  t.match(warnings(h.logs, 'AGENT_ERR_SPOOL'), [{ level: 50, msg: /compaction failed/ }])
  t.equal(h.r.stats.unackedBatches, 0)
})

t.test('a batch this process wrote is sent as written: a change to the file afterwards does not reach the control plane', async (t) => {
  const dir = t.testdir()
  const h = harness(t, { dir })
  h.up = false
  h.r.record(ev(1))
  h.r.flush()
  await h.r.idle()
  const path = join(dir, SPOOL_FILE)
  const bytes = readFileSync(path)
  const at = bytes.indexOf('B 1 ') + 12
  bytes[at] = bytes[at]! ^ 0x20
  writeFileSync(path, bytes)
  h.up = true
  h.r.resend()
  await h.r.idle()
  t.same(h.sent, [{ seq: 1, events: [ev(1)] }], 'from the spool\'s copy of the line it wrote, not the file')
  t.match(h.r.stats, { lostBatches: 0 })
})

t.test('a batch that no longer reads back is let go with an error and a loss report, and the rest still go', async (t) => {
  // Spooled by an earlier run: this one reads them back from the file, which changes after open.
  const dir = t.testdir()
  const clock = new FakeClock()
  const before = harness(t, { dir, clock, crash: true })
  before.up = false
  before.r.record(ev(1))
  before.r.flush()
  await before.r.idle()
  before.r.record(ev(2))
  before.r.flush()
  await before.r.idle()
  const h = harness(t, { dir, clock })
  h.up = false
  const path = join(dir, SPOOL_FILE)
  const bytes = readFileSync(path)
  const at = bytes.indexOf('B 1 ') + 12
  bytes[at] = bytes[at]! ^ 0x20
  writeFileSync(path, bytes) // in place: the reporter's open file sees the change
  h.up = true
  h.r.resend()
  await h.r.idle() // the report is sent once its line is durable
  t.same(seqs(h.sent), [2, 3], 'batch 2, then the report of batch 1')
  t.match(h.sent[1], { seq: 3, events: [], loss: { at: FAKE_EPOCH, lines: 1, batches: 1, seqs: [1] } })
  t.match(warnings(h.logs, 'AGENT_ERR_USAGE_LOST'), [{ level: 50, seq: 1, lossReportSeq: 3, msg: /no longer reads back intact; its loss is reported/ }])
  t.match(h.r.stats, { unackedBatches: 2, lostBatches: 1, recoveredBatches: 0, lossReportsPending: 1 })
  h.r.ack(3)
  t.match(h.r.stats, { unackedBatches: 1, lossReportsPending: 0 })
})

t.test('a loss report that cannot be spooled is logged, and the batch let go', async (t) => {
  // Batch 1 spooled under a lease that ends at seq 2: the report, seq 2, must write a new one.
  const dir = t.testdir({ [SEQ_FILE]: '2\n', [SPOOL_FILE]: Buffer.concat([headerLine(1), encodeLine(`B 1 ${JSON.stringify([ev(1)])}`)]) })
  const h = harness(t, { dir })
  h.up = false
  const path = join(dir, SPOOL_FILE)
  const bytes = readFileSync(path)
  const at = bytes.indexOf('B 1 ') + 12
  bytes[at] = bytes[at]! ^ 0x20
  writeFileSync(path, bytes)
  rmSync(join(dir, SEQ_FILE))
  mkdirSync(join(dir, SEQ_FILE)) // the lease cannot be written: the report's append fails
  h.up = true
  h.r.resend()
  await h.r.idle()
  t.same(seqs(h.sent), [])
  t.match(warnings(h.logs, 'AGENT_ERR_USAGE_LOST'), [{ level: 50, seq: 1, msg: /could not be spooled; it is dropped/ }])
  t.match(h.r.stats, { unackedBatches: 0, lostBatches: 1 })
})

t.test('close flushes pending events; afterwards every call is harmless', async (t) => {
  const dir = t.testdir()
  const a = harness(t, { dir })
  a.up = false
  a.r.record(ev(1))
  await a.r.close()
  t.equal(a.clock.pendingTimers, 0, 'no timer left behind')
  t.doesNotThrow(() => {
    a.r.record(ev(2))
    a.r.flush()
    a.r.resend()
    a.r.ack(1)
    a.r.close()
  })
  t.equal(a.r.stats.dropped, 1, 'an event after close is counted as dropped')
  const b = harness(t, { dir })
  b.r.resend()
  await b.r.idle()
  t.same(b.sent, [{ seq: 1, events: [ev(1)] }], 'the batch flushed at close is delivered by the next run')
})

t.test('open refuses bad options with AGENT_ERR_CONFIG', async (t) => {
  const base = { stateDir: t.testdir(), clock: new FakeClock(), logger: pino({ level: 'silent' }), maxSpoolBytes: 1000, flushMs: 1000, send: () => true }
  t.equal(codeOf(() => UsageReporter.open({ ...base, flushMs: 0 })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => UsageReporter.open({ ...base, maxSpoolBytes: Number.NaN })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => UsageReporter.open({ ...base, maxInFlight: 0 })), 'AGENT_ERR_CONFIG')
})

t.test('batches past the spool\'s line cache are read back from the file, one at a time, in seq order', async (t) => {
  const h = harness(t, { lineCacheBytes: 1 })
  h.up = false
  await spoolEach(h, 1, 5)
  h.up = true
  h.r.resend()
  t.same(h.sent, [], 'nothing sent from memory: each is being read')
  await h.r.idle()
  t.same(h.sent, [1, 2, 3, 4, 5].map((i) => ({ seq: i, events: [ev(i)] })), 'every batch, as written, in order')
  h.r.ack(2)
  h.r.resend()
  await h.r.idle()
  t.same(seqs(h.sent.slice(5)), [1, 3, 4, 5], 'a resend reads them again, the acked one left out')
})
