// How CLI commands print results and failures.
//
// `--json` prints exactly one JSON document, newline-terminated, for scripts;
// otherwise arrays of records become an aligned table and a single record becomes
// `key: value` lines. Moments (fields named …At, notAfter) are ISO 8601: UTC in
// JSON, local time with its offset for people. Failures are one line on stderr, `keymesh: <message> (<code>)`,
// with exit code 2 for usage mistakes and 1 for everything else. A stack trace is
// printed only for an unexpected error and only with `--debug`: a KeymeshError is a
// known condition whose message already says what to do.
import { isKeymeshError } from '../protocol/src/errors.js'

export interface Writable { write(chunk: string): unknown }

/** A column: the record field, and the heading to show (default: the field, upper-cased). */
export type Column = string | { readonly key: string; readonly header?: string }

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** Codes that mean the command line itself was wrong. */
const USAGE_CODES: ReadonlySet<string> = new Set(['CP_ERR_USAGE', 'AGENT_ERR_USAGE'])

/**
 * A field that holds a moment: `createdAt`, `expiresAt`, `notAfter`,
 * `previousNotAfter` … The admin API sends them as epoch milliseconds; the CLI shows
 * them as ISO 8601 (UTC in JSON, local time for people). Durations are named `…Ms`
 * and stay numbers. An audit entry's or checkpoint's `at` is hashed and signed as it
 * is, so it stays a number (a checkpoint carries `time` beside it).
 */
export function isTimeField(name: string): boolean {
  return /[a-z]At$/.test(name) || name === 'notAfter' || /[a-z]NotAfter$/.test(name)
}

/** ISO 8601 in this machine's time zone, with its offset (`Z` when that is UTC). */
export function localTime(ms: number): string {
  const d = new Date(ms)
  const offset = -d.getTimezoneOffset()
  if (offset === 0) return d.toISOString()
  const local = new Date(ms + offset * 60_000).toISOString().slice(0, -1)
  const abs = Math.abs(offset)
  return `${local}${offset < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`
}

/** Human time of an epoch-milliseconds value, null kept (shown as `-`). */
export function humanTime(ms: number | null | undefined): string | null {
  return typeof ms === 'number' ? localTime(ms) : null
}

/** `value` with every time field's epoch milliseconds written as ISO 8601 by `format`, at any depth. */
export function withIsoTimes(value: unknown, format: (ms: number) => string = (ms) => new Date(ms).toISOString()): unknown {
  if (Array.isArray(value)) return value.map((v) => withIsoTimes(v, format))
  if (!isRecord(value)) return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [
    k, isTimeField(k) && typeof v === 'number' && Number.isFinite(v) ? format(v) : withIsoTimes(v, format),
  ]))
}

export function renderJson(value: unknown): string {
  return `${JSON.stringify(value ?? null, null, 2)}\n`
}

/** Renders records as an aligned table in the given column order; missing values show as `-`. */
export function renderTable(rows: readonly Readonly<Record<string, unknown>>[], columns: readonly Column[]): string {
  const cols = columns.map((c) => (typeof c === 'string' ? { key: c, header: c.toUpperCase() } : { key: c.key, header: c.header ?? c.key.toUpperCase() }))
  if (rows.length === 0) return '(none)\n'
  const cells = [cols.map((c) => c.header), ...rows.map((r) => cols.map((c) => cell(r[c.key])))]
  const widths = cols.map((_, i) => Math.max(...cells.map((line) => (line[i] as string).length)))
  return cells
    .map((line) => line.map((text, i) => (i === line.length - 1 ? text : text.padEnd(widths[i] as number))).join('  '))
    .join('\n') + '\n'
}

/** Renders one record as `key: value` lines, keys aligned, in the given order (default: the record's own). */
export function renderRecord(record: Readonly<Record<string, unknown>>, fields?: readonly Column[]): string {
  const cols = (fields ?? Object.keys(record)).map((c) => (typeof c === 'string' ? { key: c, header: c } : { key: c.key, header: c.header ?? c.key }))
  if (cols.length === 0) return ''
  const width = Math.max(...cols.map((c) => c.header.length)) + 1
  return cols.map((c) => `${`${c.header}:`.padEnd(width)} ${cell(record[c.key])}`).join('\n') + '\n'
}

export interface PrintOptions {
  readonly json?: boolean | undefined
  /** Column order for tables and single records. */
  readonly columns?: readonly Column[]
}

/** Prints a command's result: JSON with `--json`, else a table (arrays) or `key: value` lines (records). */
export function printResult(out: Writable, value: unknown, options: PrintOptions = {}): void {
  if (options.json) {
    out.write(renderJson(withIsoTimes(value)))
    return
  }
  value = withIsoTimes(value, localTime)
  if (Array.isArray(value)) {
    const columns = options.columns ?? [...new Set(value.flatMap((r) => (isRecord(r) ? Object.keys(r) : [])))]
    out.write(renderTable(value.map((r) => (isRecord(r) ? r : { value: r })), columns.length > 0 ? columns : ['value']))
  } else if (isRecord(value)) {
    out.write(renderRecord(value, options.columns))
  } else if (value !== undefined) {
    out.write(`${cell(value)}\n`)
  }
}

export interface RunOptions {
  readonly debug?: boolean | undefined
  readonly stderr?: Writable
}

/**
 * Runs a command and turns its outcome into an exit code. The command may return a
 * code itself (e.g. `audit verify` finding a broken chain); a throw is reported as
 * one line on stderr.
 */
export async function runCommand(fn: () => Promise<number | void>, options: RunOptions = {}): Promise<number> {
  const stderr = options.stderr ?? process.stderr
  try {
    return (await fn()) ?? EXIT_OK
  } catch (err) {
    if (isKeymeshError(err)) {
      stderr.write(`keymesh: ${oneLine(err.message)} (${err.code})\n`)
      return USAGE_CODES.has(err.code) ? EXIT_USAGE : EXIT_FAILURE
    }
    const message = err instanceof Error ? err.message : String(err)
    stderr.write(`keymesh: unexpected error: ${oneLine(message)}${options.debug ? '' : ' (run with --debug for details)'}\n`)
    if (options.debug && err instanceof Error && err.stack) stderr.write(`${err.stack}\n`)
    return EXIT_FAILURE
  }
}

function cell(value: unknown): string {
  if (value === undefined || value === null || value === '') return '-'
  if (value instanceof Date) return localTime(value.getTime())
  if (Array.isArray(value)) return value.length === 0 ? '-' : oneLine(value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join(','))
  if (typeof value === 'object') return oneLine(JSON.stringify(value))
  return oneLine(String(value))
}

/** Keeps output on one line and free of terminal control sequences. */
function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
