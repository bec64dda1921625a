// Mending a damaged usage spool at open, so that no usage is set aside unseen.
//
// A damaged spool (spool-format.ts: a bad line with good ones after it, a record
// that breaks the rules) used to be renamed to usage.spool.damaged-<time> and a new
// one started: its unacknowledged batches were never delivered. Now:
//   - every intact unacknowledged batch is carried into the new spool with its own
//     seq and events, so it is delivered as it would have been (the control plane
//     records each seq once: a batch it already had is acked again, not counted twice);
//   - what could not be read is counted (lines, bytes, batches whose line was lost
//     and not acked later in the file, and their seqs where still readable) and
//     appended as a loss report: an `L` line, a batch of its own with the next seq,
//     which the control plane audits as usage.loss. It is in the same atomic write
//     as the recovered batches, so a crash cannot keep one without the other;
//   - the unreadable lines themselves are kept, byte for byte, in
//     usage.spool.unreadable-<time> (0600) for whoever wants to look; nothing reads
//     that file again;
//   - spools an older agent set aside (usage.spool.damaged-*) are taken in the same
//     way, then removed. The loss report names them, so that a crash between the
//     new spool's write and their removal does not report their loss twice.
// Seqs in the new spool stay above every seq seen and above the lease (spool.ts).
import { existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'

import { MAX_LOST_SEQS, type UsageLoss } from '../../../protocol/src/index.js'
import { fsyncDir, writeFileAtomic } from '../../../platform/src/index.js'
import type { Clock } from '../clock.js'
import { headerLine, lossLine, scanSpool, type Location, type Scan } from './spool-format.js'

/** Spools set aside by agents before this version. */
export const LEGACY_DAMAGED_PREFIX = 'usage.spool.damaged-'
/** Where unreadable lines are kept: `<spool>.unreadable-<time>`. */
export const UNREADABLE_INFIX = '.unreadable-'
const MODE = 0o600

/** One file to take batches from: the spool itself (no name) or a set-aside one (its name in the state dir). */
export interface SalvageSource {
  readonly name: string | undefined
  readonly buf: Buffer
  readonly scan: Scan
}

/** What the mended spool holds and what was found. */
export interface Salvaged {
  readonly content: Buffer
  readonly nextSeq: number
  /** Unacknowledged batches in the new content, in seq order. */
  readonly unacked: Map<number, Location>
  /** Seqs of the loss reports among them. */
  readonly lossSeqs: Set<number>
  /** Intact unacknowledged batches carried over from damaged files (loss reports not counted). */
  readonly recovered: number
  /** The loss reported by this salvage, and its seq; undefined when every line read back. */
  readonly loss: (UsageLoss & { readonly seq: number }) | undefined
  /** Where the unreadable lines were written, if any. */
  readonly unreadableFile: string | undefined
  /** The set-aside files taken in (removed once the new spool is written). */
  readonly legacy: readonly string[]
}

/** The names of spools an older agent set aside in `stateDir`, oldest first. */
export function legacySpools(stateDir: string): string[] {
  try {
    return readdirSync(stateDir).filter((f) => f.startsWith(LEGACY_DAMAGED_PREFIX)).sort()
  } catch {
    return []
  }
}

export interface SalvageOptions {
  readonly path: string
  readonly stateDir: string
  readonly clock: Clock
  readonly lease: number
  /** The spool as read, if there is one. */
  readonly spool: SalvageSource | undefined
  /** Spools an older agent set aside. */
  readonly legacy: readonly SalvageSource[]
}

/**
 * Writes the mended spool at `path`: unreadable lines aside, then the new spool
 * atomically, then the set-aside files removed. Throws on an I/O error before the
 * new spool is in place (the old files are then as they were).
 */
export function salvage(o: SalvageOptions): Salvaged {
  const { spool, legacy } = o
  const already = new Set(spool?.scan.imported ?? [])
  const taken = legacy.filter((s) => !already.has(s.name as string))

  const lines = new Map<number, { bytes: Buffer; tag: string }>()
  let recovered = 0
  let highest = 0
  const lost = { lines: 0, bytes: 0, batches: 0, seqs: new Set<number>(), raw: [] as Buffer[] }
  for (const s of [...(spool ? [spool] : []), ...taken]) {
    highest = Math.max(highest, s.scan.highest, ...s.scan.lost.seqs)
    for (const [seq, loc] of s.scan.unacked) {
      if (lines.has(seq)) continue
      lines.set(seq, { bytes: s.buf.subarray(loc.offset, loc.offset + loc.length), tag: loc.tag })
      if (loc.tag === 'B' && (s !== spool || spool.scan.damage !== undefined)) recovered++
    }
    // A clean spool has nothing lost; a set-aside one is counted whatever it holds.
    lost.lines += s.scan.lost.lines
    lost.bytes += s.scan.lost.bytes
    lost.batches += s.scan.lost.unknownBatches + s.scan.lost.seqs.size
    for (const seq of s.scan.lost.seqs) lost.seqs.add(seq)
    lost.raw.push(...s.scan.lost.raw)
  }
  let nextSeq = Math.max(highest + 1, o.lease, 1)
  let loss: Salvaged['loss']
  const tail: Buffer[] = []
  if (lost.lines > 0) {
    const seqs = [...lost.seqs].sort((a, b) => a - b).slice(0, MAX_LOST_SEQS)
    loss = { seq: nextSeq, at: o.clock.now(), lines: lost.lines, bytes: lost.bytes, batches: lost.batches, seqs }
    const { seq: _, ...report } = loss
    tail.push(lossLine(nextSeq, report, taken.map((s) => s.name as string)))
    nextSeq++
  }

  const parts: Buffer[] = [headerLine(nextSeq)]
  const unacked = new Map<number, Location>()
  const lossSeqs = new Set<number>()
  let offset = parts[0]!.length
  const put = (seq: number, bytes: Buffer, tag: string): void => {
    parts.push(bytes)
    unacked.set(seq, { offset, length: bytes.length })
    if (tag === 'L') lossSeqs.add(seq)
    offset += bytes.length
  }
  for (const seq of [...lines.keys()].sort((a, b) => a - b)) put(seq, lines.get(seq)!.bytes, lines.get(seq)!.tag)
  if (loss) put(loss.seq, tail[0]!, 'L')

  let unreadableFile: string | undefined
  if (lost.raw.length > 0) {
    unreadableFile = besideFree(`${o.path}${UNREADABLE_INFIX}${stamp(o.clock)}`)
    writeFileAtomic(unreadableFile, Buffer.concat(lost.raw), MODE)
  }
  const content = Buffer.concat(parts)
  writeFileAtomic(o.path, content, MODE)
  for (const s of legacy) unlinkSync(join(o.stateDir, s.name as string))
  if (legacy.length > 0) fsyncDir(o.stateDir)
  return { content, nextSeq, unacked, lossSeqs, recovered, loss, unreadableFile, legacy: taken.map((s) => s.name as string) }
}

/** Reads a set-aside spool for salvage. */
export function readLegacy(stateDir: string, name: string): SalvageSource {
  const buf = readFileSync(join(stateDir, name))
  return { name, buf, scan: scanSpool(buf) }
}

function stamp(clock: Clock): string {
  return new Date(clock.now()).toISOString().replace(/[:.]/g, '-')
}

/** `path`, or `path-1`, `path-2` … when taken. */
function besideFree(path: string): string {
  let target = path
  for (let i = 1; existsSync(target); i++) target = `${path}-${i}`
  return target
}
