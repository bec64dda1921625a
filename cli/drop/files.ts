// Where a drop's bytes come from and go to: a file or stdin in, and out either
// stdout or a file that appears whole or not at all.
//
// Contracts:
// - DropReader.read() resolves with the next bytes, or undefined at the end. A
//   file is read in READ_BYTES pieces into two buffers that take turns (the next
//   read runs while the caller works on this one), so memory stays constant; the
//   array returned is valid until the next read().
// - A file output is written to a temporary file beside OUT (created 'wx' with the
//   caller's mode, 0600 for plaintext) and becomes OUT only in commit(): fsync,
//   then link (no --force: never replaces a file that appeared meanwhile) or
//   rename (--force), then fsync of the directory. abort() removes the temporary
//   file, so a failure leaves no OUT behind. At most one write is in flight, and
//   one background flush (SYNC_EVERY).
// - Every failure is AGENT_ERR_DROP_FILE naming the path and the errno code, or
//   CP_ERR_FILE_EXISTS; never a raw Node error.
import { randomBytes } from 'node:crypto'
import { link, lstat, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

import { agentError } from '../../agent/src/index.js'
import { cpError } from '../../control-plane/src/index.js'
import { fsyncDir } from '../../platform/src/index.js'

/** Bytes per file read: big enough that per-call costs vanish, small enough to stay well inside the memory budget. */
export const READ_BYTES = 1024 * 1024
/**
 * A file output is flushed (fdatasync, in the thread pool) every this many bytes
 * while sealing or opening goes on. Without it the kernel keeps the whole output as
 * dirty pages (background writeback starts at 10% of RAM) and the final fsync
 * writes all of it while nothing else happens (0.8 s for 1 GiB, measured on this
 * machine); with it the disk works alongside the cipher and the final fsync finds
 * little left (0.03-0.1 s).
 */
export const SYNC_EVERY = 64 * 1024 * 1024

export interface DropReader {
  /** The input's size when it is a regular file, for the progress line. */
  readonly size: number | undefined
  read(): Promise<Uint8Array | undefined>
  close(): Promise<void>
}

export interface DropWriter {
  write(chunks: readonly Uint8Array[]): Promise<void>
  commit(): Promise<void>
  abort(): Promise<void>
}

/** The errno code of a file-system error, for one-line messages. */
export const errnoOf = (err: unknown): string => {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : 'I/O error'
}

const fileError = (what: string, err: unknown) => agentError('AGENT_ERR_DROP_FILE', `${what}: ${errnoOf(err)}`, { cause: err })

/** A byte stream such as process.stdin or a test's PassThrough. */
export type ByteSource = AsyncIterable<Uint8Array | string>

/** Reads `path`, or `stdin` when path is '-'. */
export async function openReader(path: string, stdin: ByteSource): Promise<DropReader> {
  if (path === '-') {
    const it = stdin[Symbol.asyncIterator]()
    return {
      size: undefined,
      read: async () => {
        let r: IteratorResult<Uint8Array | string>
        try {
          r = await it.next()
        } catch (err) {
          throw fileError('stdin', err)
        }
        if (r.done) return undefined
        return typeof r.value === 'string' ? Buffer.from(r.value) : r.value
      },
      close: async () => {
        await it.return?.()
      },
    }
  }
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw fileError(`cannot read ${path}`, err)
  }
  try {
    const st = await fh.stat()
    if (st.isDirectory()) throw agentError('AGENT_ERR_DROP_FILE', `cannot read ${path}: is a directory`)
    return fileReader(fh, path, st.isFile() ? st.size : undefined)
  } catch (err) {
    await fh.close()
    throw err
  }
}

function fileReader(fh: FileHandle, path: string, size: number | undefined): DropReader {
  // Two buffers taking turns: `next` is being filled while the caller holds `cur`.
  let next = Buffer.allocUnsafe(READ_BYTES)
  let spare = Buffer.allocUnsafe(READ_BYTES)
  let eof = false
  const start = (): Promise<number> => {
    const p = fh.read(next, 0, READ_BYTES, null).then((r) => r.bytesRead)
    p.catch(() => undefined) // observed in read(); never an unhandled rejection
    return p
  }
  let pending: Promise<number> | undefined = start()
  return {
    size,
    async read() {
      if (eof || pending === undefined) return undefined
      let n: number
      try {
        n = await pending
      } catch (err) {
        pending = undefined
        throw fileError(`cannot read ${path}`, err)
      }
      if (n === 0) {
        eof = true
        pending = undefined
        return undefined
      }
      const cur = next
      next = spare
      spare = cur
      pending = start()
      return cur.subarray(0, n)
    },
    async close() {
      await pending?.catch(() => undefined)
      pending = undefined
      await fh.close().catch(() => undefined)
    },
  }
}

/** A writable byte stream (process.stdout, a socket, a test's collector). */
export type ByteSink = NodeJS.WritableStream

export function isByteSink(s: unknown): s is ByteSink {
  const o = s as Record<string, unknown> | null
  return typeof o === 'object' && o !== null && typeof o['write'] === 'function' && typeof o['on'] === 'function' && typeof o['once'] === 'function' && typeof o['off'] === 'function'
}

/** Resolves on 'drain' or on 'error' (which onError records), so a closed pipe cannot hang the command. */
function drainOrError(sink: ByteSink): Promise<void> {
  return new Promise((resolve) => {
    const wake = (): void => {
      sink.off('drain', wake)
      sink.off('error', wake)
      resolve()
    }
    sink.once('drain', wake)
    sink.once('error', wake)
  })
}

/** Writes to a stream such as stdout, waiting for 'drain' whenever it asks to. Never ends the stream. */
export function streamWriter(sink: ByteSink, name = 'stdout'): DropWriter {
  let failed: Error | undefined
  const onError = (err: Error): void => {
    failed ??= err
  }
  sink.on('error', onError)
  const check = (): void => {
    if (failed) throw fileError(`cannot write ${name}`, failed)
  }
  const done = (): void => {
    sink.off('error', onError)
  }
  return {
    async write(chunks) {
      check()
      for (const c of chunks) {
        if (c.length === 0) continue
        if (!sink.write(c)) {
          await drainOrError(sink)
          check()
        }
      }
    },
    async commit() {
      // The callback of an empty write runs once everything before it is flushed.
      await new Promise<void>((resolve) => sink.write(new Uint8Array(0), () => resolve()))
      check()
      done()
    },
    async abort() {
      done()
    },
  }
}

/** Throws CP_ERR_FILE_EXISTS when `path` exists (unless `force`): checked before any work is done. */
export async function checkOutputFree(path: string, force: boolean): Promise<void> {
  if (force) return
  try {
    await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw fileError(`cannot write ${path}`, err)
  }
  throw cpError('CP_ERR_FILE_EXISTS', path)
}

/** A file writer for `path` via a temporary file beside it (see the file comment). */
export async function fileWriter(path: string, options: { force: boolean; mode: number; syncEvery?: number }): Promise<DropWriter> {
  const syncEvery = options.syncEvery ?? SYNC_EVERY
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  let fh: FileHandle
  try {
    fh = await open(tmp, 'wx', options.mode)
  } catch (err) {
    throw fileError(`cannot create a file in ${dir}`, err)
  }
  let inflight: Promise<void> = Promise.resolve()
  // Background flushes (SYNC_EVERY), one at a time, chained so that a failed one
  // keeps the chain rejected until commit() sees it.
  let flushes: Promise<void> = Promise.resolve()
  let flushing = false
  let unflushed = 0
  const writeAll = async (chunks: readonly Uint8Array[]): Promise<void> => {
    const { bytesWritten } = await fh.writev(chunks as Uint8Array[])
    // writev may stop short (a full disk, a signal): write the rest piece by piece.
    let skip = bytesWritten
    for (const c of chunks) {
      if (skip >= c.length) {
        skip -= c.length
        continue
      }
      let off = skip
      skip = 0
      while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten
    }
  }
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await fh.close()
  }
  return {
    async write(chunks) {
      try {
        await inflight
      } catch (err) {
        throw fileError(`cannot write ${tmp}`, err)
      }
      inflight = writeAll(chunks)
      inflight.catch(() => undefined) // observed by the next write or commit
      for (const c of chunks) unflushed += c.length
      if (unflushed >= syncEvery && !flushing) {
        unflushed = 0
        flushing = true
        const written = inflight
        flushes = flushes.then(() => written).then(() => fh.datasync()).finally(() => {
          flushing = false
        })
        flushes.catch(() => undefined)
      }
    },
    async commit() {
      try {
        await inflight
        await flushes
        await fh.sync()
        await close()
      } catch (err) {
        await close().catch(() => undefined)
        await rm(tmp, { force: true })
        throw fileError(`cannot write ${tmp}`, err)
      }
      try {
        if (options.force) {
          await rename(tmp, path)
        } else {
          // link fails with EEXIST if OUT appeared since the check: nothing is replaced.
          await link(tmp, path)
          await unlink(tmp)
        }
        fsyncDir(dir)
      } catch (err) {
        await rm(tmp, { force: true })
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw cpError('CP_ERR_FILE_EXISTS', path)
        throw fileError(`cannot write ${path}`, err)
      }
    },
    async abort() {
      await inflight.catch(() => undefined)
      await flushes.catch(() => undefined)
      await close().catch(() => undefined)
      await rm(tmp, { force: true })
    },
  }
}
