// Operator bearer tokens: mint, list, revoke. A token is shown once, when it is
// created; the store keeps only its SHA-256 (policy.hashTokenBytes), so neither a
// copied database nor the audit log can give it back.
//
// What must hold:
// - every change is one perform() transaction with its audit entry;
// - a token's secret never reaches a log, an error, an audit entry or a listing;
// - the installation always keeps at least one active admin token: revoking the
//   last one is refused (CP_ERR_LAST_ADMIN), checked inside the revoking
//   transaction so two concurrent revocations cannot both pass the check.
import { newTokenId, validateTokenId } from '../../../protocol/src/index.js'
import type { Actor, CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { perform } from '../operation.js'
import { hashTokenBytes, newToken } from '../policy.js'
import type { OperatorRole, OperatorTokenRecord } from '../store/records.js'
import type { StoreReader } from '../store/store.js'
import { DAY } from '../../../platform/src/index.js'

/** Shortest and longest lifetime a new token may be given (when one is given). */
export const MIN_TOKEN_TTL_MS = 60_000
export const MAX_TOKEN_TTL_MS = 3 * 366 * DAY
/** Printable, no spaces, so a name reads well in a table and an audit line. */
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/

export type TokenStatus = 'active' | 'expired' | 'revoked'

/** A token as operators see it: never the token, never its hash. */
export interface TokenView {
  readonly id: string
  readonly name: string
  readonly role: OperatorRole
  readonly status: TokenStatus
  readonly createdAt: number
  readonly expiresAt: number | null
  readonly revokedAt: number | null
}

/** The answer to a create: the one time the bearer token itself is shown. */
export interface CreatedToken {
  readonly id: string
  readonly name: string
  readonly role: OperatorRole
  readonly token: string
  readonly expiresAt: number | null
}

export interface CreateTokenInput {
  readonly name: string
  readonly role: OperatorRole
  /** Lifetime from now; omitted → the token does not expire (like the bootstrap token). */
  readonly ttlMs?: number | undefined
}

export function tokenStatus(r: OperatorTokenRecord, now: number): TokenStatus {
  if (r.revokedAt !== null) return 'revoked'
  if (r.expiresAt !== null && r.expiresAt <= now) return 'expired'
  return 'active'
}

export function tokenView(r: OperatorTokenRecord, now: number): TokenView {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    status: tokenStatus(r, now),
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    revokedAt: r.revokedAt,
  }
}

export async function createOperatorToken(ctx: CpContext, actor: Actor, input: CreateTokenInput): Promise<CreatedToken> {
  const id = newTokenId(ctx.suite.randomBytes)
  // Every operator role shares the kmo_ form: the role lives in the store, not in the token.
  const token = newToken(ctx.suite, 'operator')
  const now = ctx.clock.now()
  const expiresAt = input.ttlMs === undefined ? null : now + input.ttlMs
  await perform(ctx, {
    actor,
    action: 'token.create',
    target: `token:${id}`,
    run: async (tx) => {
      // Checked inside the operation so that a refusal is audited like any other.
      if (!TOKEN_NAME.test(input.name)) {
        throw cpError('CP_ERR_INVALID_FIELD', 'name must be 1-64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit')
      }
      if (input.ttlMs !== undefined && (input.ttlMs < MIN_TOKEN_TTL_MS || input.ttlMs > MAX_TOKEN_TTL_MS)) {
        throw cpError('CP_ERR_INVALID_FIELD', `ttlMs must be from ${MIN_TOKEN_TTL_MS} (1 minute) to ${MAX_TOKEN_TTL_MS} (3 years)`)
      }
      await tx.insertOperatorToken({
        id,
        name: input.name,
        tokenHash: hashTokenBytes(ctx.suite, token),
        role: input.role,
        createdAt: now,
        expiresAt,
        revokedAt: null,
      })
      return {
        result: undefined,
        reason: `created ${input.role} token ${input.name}`,
        details: { tokenId: id, name: input.name, role: input.role, expiresAt },
      }
    },
  })
  return { id, name: input.name, role: input.role, token, expiresAt }
}

export async function listOperatorTokens(ctx: CpContext, options: { includeRevoked?: boolean } = {}): Promise<TokenView[]> {
  const rows = await ctx.store.read((r) => r.listOperatorTokens({ includeRevoked: options.includeRevoked === true }))
  const now = ctx.clock.now()
  return rows.map((r) => tokenView(r, now))
}

/** Admin tokens other than `exceptId` that can still authenticate at `now`. */
async function otherActiveAdmins(r: StoreReader, exceptId: string, now: number): Promise<number> {
  const all = await r.listOperatorTokens()
  return all.filter((t) => t.id !== exceptId && t.role === 'admin' && tokenStatus(t, now) === 'active').length
}

export async function revokeOperatorToken(ctx: CpContext, actor: Actor, id: string): Promise<TokenView> {
  return perform(ctx, {
    actor,
    action: 'token.revoke',
    target: `token:${id.slice(0, 64)}`,
    run: async (tx) => {
      validateTokenId(id)
      const now = ctx.clock.now()
      const record = await tx.getOperatorToken(id)
      if (!record) throw cpError('CP_ERR_NOT_FOUND', 'no such operator token')
      if (record.revokedAt !== null) throw cpError('CP_ERR_TOKEN_REVOKED')
      if (record.role === 'admin' && tokenStatus(record, now) === 'active' && (await otherActiveAdmins(tx, id, now)) === 0) {
        throw cpError('CP_ERR_LAST_ADMIN')
      }
      if (!(await tx.revokeOperatorToken(id, now))) throw cpError('CP_ERR_TOKEN_REVOKED')
      const self = actor.kind === 'operator' && actor.id === id
      return {
        result: tokenView({ ...record, revokedAt: now }, now),
        reason: self ? `revoked own ${record.role} token ${record.name}` : `revoked ${record.role} token ${record.name}`,
        details: { tokenId: id, name: record.name, role: record.role },
      }
    },
  })
}
