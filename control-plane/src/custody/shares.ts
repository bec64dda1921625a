// Shamir shares of the master key (custody kind "shares"), with the audited
// `shamir-secret-sharing` library (GF(2^8), as Vault's): this file only gives the
// shares a text form and keeps the unseal progress.
//
// Share text: "kms1-" + installation id + "-" + base64url(share bytes). The library's
// share is the 32 y-bytes then the x byte. The installation id lets `keymesh unseal`
// refuse another installation's share before it spoils a combination; it is no secret.
//
// Unseal progress (UnsealProgress) lives in memory only: the shares given so far,
// distinct, at most `threshold`; forgotten `timeoutMs` after the last one, on reset,
// on seal and once combined. The library cannot tell a wrong combination (its README:
// verifying the result is the caller's job): the caller tries to unwrap the store key
// with it (custody/record.ts), whose AEAD tag fails for any other key.
import { timingSafeEqual } from 'node:crypto'
import { combine, split } from 'shamir-secret-sharing'

import type { MonotonicClock } from '../../../platform/src/index.js'
import { cpError } from '../errors.js'
import { MASTER_KEY_BYTES } from '../seal.js'

export const SHARE_PREFIX = 'kms1'
export const MAX_SHARES = 16
export const DEFAULT_UNSEAL_TIMEOUT_MS = 10 * 60_000
const SHARE_BYTES = MASTER_KEY_BYTES + 1
const SHARE_TEXT = /^kms1-([0-9a-f]{16})-([A-Za-z0-9_-]{44})$/

/** Checks N and K as `init` and `rekey` take them. */
export function checkShareCounts(shares: number, threshold: number): void {
  // The library's bounds are 2..255; a 1-of-1 "share" would be the key itself (use --key-file).
  if (!Number.isInteger(shares) || shares < 2 || shares > MAX_SHARES) throw cpError('CP_ERR_USAGE', `--shares must be an integer from 2 to ${MAX_SHARES}, got ${shares}`)
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > shares) throw cpError('CP_ERR_USAGE', `--threshold must be an integer from 2 to --shares (${shares}), got ${threshold}`)
}

/** Splits the master key into `shares` texts, any `threshold` of which give it back. */
export async function splitMasterKey(masterKey: Uint8Array, installation: string, shares: number, threshold: number): Promise<string[]> {
  checkShareCounts(shares, threshold)
  const parts = await split(masterKey, shares, threshold)
  try {
    return parts.map((p) => `${SHARE_PREFIX}-${installation}-${Buffer.from(p).toString('base64url')}`)
  } finally {
    for (const p of parts) p.fill(0)
  }
}

/** Parses a share's text; CP_ERR_INVALID_FIELD for anything else, never quoting it. */
export function parseShare(text: string, installation: string): Uint8Array {
  const m = SHARE_TEXT.exec(text.trim())
  if (!m) throw cpError('CP_ERR_INVALID_FIELD', 'share: not a keymesh unseal share (kms1-…)')
  if (m[1] !== installation) throw cpError('CP_ERR_INVALID_FIELD', `share: it belongs to installation ${m[1]}, this is ${installation}`)
  const bytes = new Uint8Array(Buffer.from(m[2] as string, 'base64url'))
  if (bytes.length !== SHARE_BYTES) throw cpError('CP_ERR_INVALID_FIELD', 'share: wrong length')
  return bytes
}

/** The master key from `threshold` distinct shares (wrong shares give a wrong key; the caller checks). */
export async function combineShares(shares: readonly Uint8Array[]): Promise<Uint8Array> {
  try {
    return await combine([...shares])
  } catch {
    // Two shares with one x coordinate (from two different splits): no key at all.
    return new Uint8Array(0)
  }
}

export interface UnsealStatus {
  readonly have: number
  readonly threshold: number
}

export class UnsealProgress {
  private held: Uint8Array[] = []
  private lastAt = 0

  constructor(
    readonly threshold: number,
    private readonly clock: MonotonicClock,
    private readonly timeoutMs = DEFAULT_UNSEAL_TIMEOUT_MS,
  ) {}

  status(): UnsealStatus {
    this.expire()
    return { have: this.held.length, threshold: this.threshold }
  }

  /** Adds a share; the shares to combine once there are `threshold` (progress is then cleared), else null. */
  add(share: Uint8Array): Uint8Array[] | null {
    this.expire()
    const seen = this.held.some((h) => timingSafeEqual(h, share))
    if (seen) share.fill(0)
    else this.held.push(share)
    this.lastAt = this.clock.monotonicMs()
    if (this.held.length < this.threshold) return null
    const all = this.held
    this.held = []
    return all
  }

  reset(): void {
    for (const h of this.held) h.fill(0)
    this.held = []
  }

  private expire(): void {
    if (this.held.length > 0 && this.clock.monotonicMs() - this.lastAt > this.timeoutMs) this.reset()
  }
}
