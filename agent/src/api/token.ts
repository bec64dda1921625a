// The local API's bearer token. Over TCP any local user can connect to a loopback
// port, so the port alone proves nothing about the caller; the token does: it is
// written once to STATE_DIR/api.token, mode 0600, so only the agent's own uid (and
// root) can read it, and a service that may use the agent reads it as that uid.
//
// Contract:
//   - loadOrCreateApiToken returns the token in the file when it is one (43
//     base64url characters, 32 random bytes) in a file no other user can read;
//     otherwise it writes a fresh one atomically (0600) and returns that. A token
//     whose file was readable by group or others is replaced, not reused: it may
//     have been read.
//   - bearerMatches compares in constant time; a missing or malformed header never matches.
import { randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { writeFileAtomic } from '../../../platform/src/index.js'

export const API_TOKEN_FILE = 'api.token'
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/

export function loadOrCreateApiToken(stateDir: string, randomBytes: (n: number) => Uint8Array = nodeRandomBytes): string {
  const path = join(stateDir, API_TOKEN_FILE)
  const kept = readPrivateToken(path)
  if (kept !== undefined) return kept
  const token = Buffer.from(randomBytes(32)).toString('base64url')
  writeFileAtomic(path, `${token}\n`, 0o600)
  return token
}

function readPrivateToken(path: string): string | undefined {
  try {
    if ((statSync(path).mode & 0o077) !== 0) return undefined
    const text = readFileSync(path, 'utf8').trim()
    return TOKEN_RE.test(text) ? text : undefined
  } catch {
    return undefined
  }
}

/** Whether `header` is `Bearer <token>`; constant time in the token's bytes. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  if (m === null) return false
  const given = Buffer.from(m[1] as string)
  const want = Buffer.from(token)
  // timingSafeEqual needs equal lengths; comparing `want` with itself keeps the time the same.
  const same = timingSafeEqual(given.length === want.length ? given : want, want)
  return same && given.length === want.length
}
