// Join tokens, agent admission (enrolment or reconnect), agent listing and revocation.
//
// Contracts:
//   - A join token is shown once and stored as its SHA-256; it enrols one agent of
//     its service, once, before it expires. Enrolment is one transaction: the agent
//     row, the token marked used and the audit entry commit together or not at all.
//   - An enrolled, non-revoked static key reconnects without a token; its hello must
//     name its own service. A revoked key is refused even with a fresh token.
//   - Every refusal throws a typed CP_ERR_* (401/403, so it is audited as a deny)
//     from inside perform(), so nothing it touched remains.
//   - Revocation sets revokedAt and, in the same transaction, rotates every pair
//     key of the agent's service with no grace, so no key the agent held stays usable.
import { formatPublicKey } from '../../../protocol/src/index.js'
import { newAgentId, newTokenId } from '../../../protocol/src/index.js'
import type { HelloMessage } from '../../../protocol/src/index.js'
import { actorName, type Actor, type CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { ChangeEvent } from '../events.js'
import { allowedPairs, reconcilePairs } from './intentions.js'
import { perform } from '../operation.js'
import { hashTokenBytes, newToken, parseToken } from '../policy.js'
import type { AgentRecord } from '../store/records.js'
import type { StoreReader, StoreTx } from '../store/store.js'
import { peerServices } from './keyset.js'
import { checkService, rotatePairsOfService } from './pairs.js'

export interface CreatedJoinToken {
  readonly id: string
  /** Shown once; only its hash is stored. */
  readonly token: string
  readonly service: string
  readonly expiresAt: number
}

export async function createJoinToken(ctx: CpContext, actor: Actor, input: { service: string; ttlMs?: number | undefined }): Promise<CreatedJoinToken> {
  const service = checkService(input.service)
  const ttlMs = input.ttlMs ?? ctx.settings.joinTokenTtlMs
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > ctx.settings.joinTokenMaxTtlMs) {
    throw cpError('CP_ERR_INVALID_FIELD', `ttlMs must be 1..${ctx.settings.joinTokenMaxTtlMs}`)
  }
  const id = newTokenId(ctx.suite.randomBytes)
  const token = newToken(ctx.suite, 'join')
  return perform(ctx, {
    actor,
    action: 'join-token.create',
    target: `join-token:${id}`,
    run: async (tx) => {
      const now = ctx.clock.now()
      const expiresAt = now + ttlMs
      const before = await allowedPairs(tx, now)
      await tx.insertJoinToken({ id, tokenHash: hashTokenBytes(ctx.suite, token), service, createdAt: now, expiresAt, usedAt: null, usedByAgent: null })
      // A new service: wildcard intentions (`allow web *`) now call for its pair keys.
      const effect = await reconcilePairs(ctx, tx, before, now)
      const pairsCreated = effect.pairs.filter((p) => p.change !== 'kept').map((p) => p.pairId)
      return {
        result: { id, token, service, expiresAt },
        details: { tokenId: id, service, expiresAt, ttlMs, pairsCreated },
        events: effect.services.length > 0 ? [{ kind: 'services', services: effect.services, reason: 'join-token.create' }] : [],
      }
    },
  })
}

/** A join token as operators see it: never the token or its hash. */
export interface JoinTokenView {
  readonly id: string
  readonly service: string
  readonly createdAt: number
  readonly expiresAt: number
  readonly usedAt: number | null
  readonly usedByAgent: string | null
  readonly revokedAt: number | null
}

/** Join tokens not yet removed by the scheduler (it removes them once expired), oldest first. */
export async function listJoinTokenViews(ctx: CpContext, filter: { service?: string | undefined } = {}): Promise<JoinTokenView[]> {
  const service = filter.service === undefined ? undefined : checkService(filter.service)
  const rows = await ctx.store.read((r) => r.listJoinTokens(service === undefined ? {} : { service }))
  return rows.map(({ id, service: s, createdAt, expiresAt, usedAt, usedByAgent, revokedAt }) => ({ id, service: s, createdAt, expiresAt, usedAt, usedByAgent, revokedAt }))
}

/** Revokes an unused join token (`id` already checked to be a token id): it enrols nothing from now on. A used one is refused (revoke the agent instead). */
export async function revokeJoinToken(ctx: CpContext, actor: Actor, id: string): Promise<JoinTokenView> {
  return perform(ctx, {
    actor,
    action: 'join-token.revoke',
    target: `join-token:${id}`,
    run: async (tx) => {
      const token = await tx.getJoinToken(id)
      if (token === null) throw cpError('CP_ERR_NOT_FOUND', `no join token ${id}`)
      if (token.usedAt !== null) throw cpError('CP_ERR_CONFLICT', `join token ${id} was already used by agent ${token.usedByAgent ?? '?'}; revoke that agent instead`)
      const now = ctx.clock.now()
      const revoked = await tx.revokeJoinToken(id, now)
      const { tokenHash: _hash, ...view } = { ...token, revokedAt: revoked ? now : token.revokedAt }
      return {
        result: view,
        reason: revoked ? `revoked join token ${id} for ${token.service}` : `join token ${id} was already revoked`,
        details: { tokenId: id, service: token.service, revoked },
      }
    },
  })
}

export interface Admission {
  readonly agent: AgentRecord
  readonly enrolled: boolean
}

export interface AdmissionRequest {
  readonly staticKey: Uint8Array
  readonly hello: HelloMessage
  /** The remote address, for the audit entry of an unknown caller. */
  readonly remote?: string | undefined
}

/** Decides an agent session after its handshake: reconnect, enrol, or a typed refusal (audited either way). */
export async function admitAgent(ctx: CpContext, req: AdmissionRequest): Promise<Admission> {
  const known = await ctx.store.read((r) => r.getAgentByStaticKey(req.staticKey))
  if (known) return reconnect(ctx, known, req)
  const identity = formatPublicKey(req.staticKey)
  const actor: Actor = { kind: 'anonymous', remote: req.remote }
  const token = req.hello.joinToken
  if (token === undefined) {
    return perform(ctx, {
      actor,
      action: 'agent.connect',
      target: `service:${req.hello.service}`,
      run: async () => {
        throw cpError('CP_ERR_AGENT_UNKNOWN', `static key ${identity}`)
      },
    })
  }
  const id = newAgentId(ctx.suite.randomBytes)
  return perform(ctx, {
    actor,
    action: 'agent.enroll',
    target: `agent:${id}`,
    run: async (tx) => {
      const now = ctx.clock.now()
      // Another session may have enrolled this key since the read above.
      if (await tx.getAgentByStaticKey(req.staticKey)) throw cpError('CP_ERR_CONFLICT', `static key ${identity} enrolled concurrently`)
      const record = await usableJoinToken(ctx, tx, token, req.hello.service, now)
      const agent: AgentRecord = {
        id,
        service: req.hello.service,
        staticKey: new Uint8Array(req.staticKey),
        enrolledAt: now,
        revokedAt: null,
        lastSeenAt: now,
        endpoint: req.hello.endpoint ?? null,
      }
      await tx.insertAgent(agent)
      if (!(await tx.markJoinTokenUsed(record.id, now, id))) throw cpError('CP_ERR_JOIN_TOKEN', 'already used')
      const peers = await peerServices(tx, agent.service)
      return {
        result: { agent, enrolled: true },
        reason: `enrolled with join token ${record.id}`,
        details: { agentId: id, service: agent.service, identity, tokenId: record.id, endpoint: agent.endpoint },
        events: peers.length > 0 ? [{ kind: 'services', services: peers, reason: `agent ${id} enrolled` }] : [],
      }
    },
  })
}

async function usableJoinToken(ctx: CpContext, tx: StoreTx, token: string, service: string, now: number) {
  try {
    parseToken(token, 'join')
  } catch {
    throw cpError('CP_ERR_JOIN_TOKEN', 'malformed')
  }
  const record = await tx.getJoinTokenByHash(hashTokenBytes(ctx.suite, token))
  if (record === null) throw cpError('CP_ERR_JOIN_TOKEN', 'unknown')
  if (record.usedAt !== null) throw cpError('CP_ERR_JOIN_TOKEN', `${record.id} already used`)
  if (record.revokedAt !== null) throw cpError('CP_ERR_JOIN_TOKEN', `${record.id} revoked`)
  if (record.expiresAt <= now) throw cpError('CP_ERR_JOIN_TOKEN', `${record.id} expired at ${new Date(record.expiresAt).toISOString()}; create another (keymesh join-token create)`)
  if (record.service !== service) throw cpError('CP_ERR_SERVICE_MISMATCH', `join token ${record.id} is for another service than ${service}`)
  return record
}

async function reconnect(ctx: CpContext, known: AgentRecord, req: AdmissionRequest): Promise<Admission> {
  return perform(ctx, {
    actor: { kind: 'agent', id: known.id, service: known.service },
    action: 'agent.connect',
    target: `agent:${known.id}`,
    run: async (tx) => {
      const agent = await tx.getAgent(known.id)
      if (agent === null) throw cpError('CP_ERR_AGENT_UNKNOWN', `agent ${known.id} vanished`)
      if (agent.revokedAt !== null) throw cpError('CP_ERR_AGENT_REVOKED', `agent ${agent.id}`)
      if (agent.service !== req.hello.service) {
        throw cpError('CP_ERR_SERVICE_MISMATCH', `agent ${agent.id} belongs to ${agent.service}, not ${req.hello.service}`)
      }
      const now = ctx.clock.now()
      const endpoint = req.hello.endpoint ?? null
      await tx.updateAgent(agent.id, { lastSeenAt: now, endpoint })
      const events: ChangeEvent[] = []
      // Peers' key sets list this agent's endpoint: they hear about a change of it.
      if (endpoint !== agent.endpoint) {
        const peers = await peerServices(tx, agent.service)
        if (peers.length > 0) events.push({ kind: 'services', services: peers, reason: `agent ${agent.id} endpoint changed` })
      }
      return {
        result: { agent: { ...agent, lastSeenAt: now, endpoint }, enrolled: false },
        reason: 'known static key',
        details: { agentId: agent.id, service: agent.service, endpoint },
        events,
      }
    },
  })
}

/** An agent as the admin API lists it: the static key in its text form, never secrets. */
export interface AgentView {
  readonly id: string
  readonly service: string
  readonly staticKey: string
  readonly enrolledAt: number
  readonly lastSeenAt: number | null
  readonly revokedAt: number | null
  readonly endpoint: string | null
  readonly connected: boolean
}

export async function listAgentViews(
  ctx: CpContext,
  filter: { service?: string | undefined; includeRevoked?: boolean | undefined },
  isConnected: (agentId: string) => boolean,
): Promise<AgentView[]> {
  const service = filter.service === undefined ? undefined : checkService(filter.service)
  const agents = await ctx.store.read((r: StoreReader) =>
    r.listAgents({ ...(service !== undefined ? { service } : {}), includeRevoked: filter.includeRevoked === true }),
  )
  const now = ctx.clock.now()
  return agents.map((a) => {
    const connected = isConnected(a.id)
    return {
      id: a.id,
      service: a.service,
      staticKey: formatPublicKey(a.staticKey),
      enrolledAt: a.enrolledAt,
      // A live session is seeing the agent now; the store holds its last connect or disconnect.
      lastSeenAt: connected ? now : a.lastSeenAt,
      revokedAt: a.revokedAt,
      endpoint: a.endpoint,
      connected,
    }
  })
}

export interface Revocation {
  readonly id: string
  readonly service: string
  readonly revokedAt: number
  /** Pair keys rotated with no grace, by pair id. */
  readonly rotatedPairs: readonly string[]
}

export async function revokeAgent(ctx: CpContext, actor: Actor, id: string): Promise<Revocation> {
  return perform(ctx, {
    actor,
    action: 'agent.revoke',
    target: `agent:${id}`,
    run: async (tx) => {
      const agent = await tx.getAgent(id)
      if (agent === null) throw cpError('CP_ERR_NOT_FOUND', `agent ${id}`)
      if (agent.revokedAt !== null) throw cpError('CP_ERR_CONFLICT', `agent ${id} is already revoked`)
      const now = ctx.clock.now()
      await tx.updateAgent(id, { revokedAt: now })
      const reason = `agent ${id} revoked by ${actorName(actor)}`
      const peers = await peerServices(tx, agent.service)
      const rotatedPairs = await rotatePairsOfService(ctx, tx, agent.service, now, { graceMs: 0, reason })
      return {
        result: { id, service: agent.service, revokedAt: now, rotatedPairs },
        reason,
        details: { agentId: id, service: agent.service, rotatedPairs, identity: formatPublicKey(agent.staticKey) },
        events: [
          { kind: 'agent-revoked', agentId: id, service: agent.service },
          { kind: 'services', services: [agent.service, ...peers], reason },
        ],
      }
    },
  })
}
