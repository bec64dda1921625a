// The control plane assembled: bootstrap the data directory, build the context,
// serve the admin API and the agent WebSocket endpoint on one port, and run the
// scheduler. `close()` shuts down in order: stop taking work, let in-flight
// requests finish, close agent sessions, stop the scheduler, release the
// scheduler lease and the LISTEN connection (cluster/replica.ts), close the store.
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'

import { KeymeshError, type CryptoSuite, type ErrorTable } from '../../protocol/src/index.js'
import { nodeSuite } from '../../protocol/src/index.js'
import { createAgentEndpoint, type AgentEndpoint, type AgentEndpointOptions } from './agent-endpoint/endpoint.js'
import { agentsRoutes } from './api/agents.js'
import { tokensRoutes } from './api/tokens.js'
import { auditRoutes } from './api/audit.js'
import { loggingRoutes } from './api/logging.js'
import { backupRoutes } from './api/backup.js'
import { intentionsRoutes } from './api/intentions.js'
import { keysRoutes } from './api/keys.js'
import { operatorActor, type OperatorPrincipal } from './api/principal.js'
import { bootstrap } from './bootstrap.js'
import { startReplica } from './cluster/replica.js'
import { systemClock, type TimerClock } from '../../platform/src/index.js'
import { settings as makeSettings, type Actor, type CpContext, type CpSettings } from './context.js'
import { CP_ERRORS, cpError } from './errors.js'
import type { ChangeBus } from './events.js'
import { probeRoutes } from './http/probes.js'
import { createHttpServer, type HttpLimits, type HttpServer } from './http/server.js'
import { checkServerTls, type ServerTls } from './http/tls.js'
import { StrangerLimits, type StrangerRecord } from './http/stranger-limits.js'
import { CpMetrics } from './metrics.js'
import { auditFailure } from './operation.js'
import { authorizeOperator, hashTokenBytes, OPERATIONS, parseToken, type Operation } from './policy.js'
import { allReady, listenReadiness, storeReadiness } from './readiness.js'
import { createScheduler, type Scheduler } from './scheduler.js'
import { KmsService } from './services/kms.js'
import type { Store } from './store/store.js'

export interface ControlPlaneOptions {
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly masterKeyFile?: string | undefined
  readonly masterKeyEnv?: string | undefined
  readonly logger: Logger
  readonly settings?: Partial<CpSettings>
  readonly limits?: HttpLimits
  /** Limits of the agent endpoint (agent-endpoint/endpoint.ts); defaults otherwise. */
  readonly agentEndpoint?: Omit<AgentEndpointOptions, 'onHandshakeFailure' | 'onPreauthRefusal'>
  /** Injected for tests; real defaults otherwise. */
  readonly clock?: TimerClock
  readonly suite?: CryptoSuite
  readonly store?: Store
  /** `--store`: `sqlite:DIR` or `postgres://…`; the embedded SQLite store in dataDir when absent. */
  readonly storeUrl?: string | undefined
  readonly bus?: ChangeBus
  /** The KMS service agents' calls go through; injected for tests (other limits, a stand-in), `new KmsService(ctx)` otherwise. */
  readonly kms?: (ctx: CpContext) => KmsService
  /** Off in tests that drive `scheduler.tick()` themselves. */
  readonly runScheduler?: boolean
  /**
   * Serve the admin API and the agent endpoint over TLS with this certificate and key
   * (PEM; `keymesh control-plane` gets them from http/tls.ts). Plain HTTP when absent.
   */
  readonly tls?: ServerTls
  /** Where online backups wait to be sent (api/backup.ts); the OS temporary directory by default. */
  readonly backupSpoolDir?: string
}

export interface ControlPlane {
  readonly ctx: CpContext
  readonly address: AddressInfo
  /** `https://host:port` (`http://` without TLS), for the CLI and agents (`wss://`, `ws://` on the same port). */
  readonly url: string
  /** The served certificate's `sha256:…` fingerprint, for clients to pin; undefined without TLS. */
  readonly tlsFingerprint: string | undefined
  readonly endpoint: AgentEndpoint
  readonly scheduler: Scheduler
  /** This control plane's metrics (GET /metrics). */
  readonly metrics: CpMetrics
  /** The admin API's limits on callers without a principal (tests await `idle()`). */
  readonly strangers: StrangerLimits
  close(): Promise<void>
}

const OPERATION_SET: ReadonlySet<string> = new Set(OPERATIONS)

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const clock = o.clock ?? systemClock
  const suite = o.suite ?? nodeSuite
  const logger = o.logger
  // Checked before anything is opened: a certificate that cannot be served is the operator's to fix.
  const tlsFingerprint = o.tls === undefined ? undefined : checkServerTls(o.tls)
  const booted = await bootstrap({
    dataDir: o.dataDir,
    masterKeyFile: o.masterKeyFile,
    masterKeyEnv: o.masterKeyEnv,
    suite,
    clock,
    logger,
    ...(o.store ? { store: o.store } : {}),
    storeUrl: o.storeUrl,
  })
  // On a shared store: the LISTEN bus (started before serving) and the scheduler lease.
  const cpSettings = makeSettings(o.settings)
  const replica = await startReplica({ store: booted.store, logger, random: suite.randomBytes, bus: o.bus, resyncIntervalMs: cpSettings.resyncIntervalMs }).catch(async (e: unknown) => {
    await booted.store.close()
    booted.sealer.wipe()
    booted.lock.release()
    throw e
  })
  const metrics = new CpMetrics()
  const ctx: CpContext = {
    store: booted.store,
    suite,
    clock,
    sealer: booted.sealer,
    // Every audit entry is counted and timed on its way in (metrics.ts).
    audit: metrics.instrumentAudit(booted.audit),
    bus: replica.bus,
    logger,
    settings: cpSettings,
    identity: booted.identity,
  }

  const kms = o.kms?.(ctx) ?? new KmsService(ctx)
  const endpoint = createAgentEndpoint(ctx, {
    ...o.agentEndpoint,
    kms,
    onHandshakeFailure: (code) => metrics.handshakeFailed(code),
    onPreauthRefusal: (code) => metrics.preauthRefused(code),
  })
  metrics.watchAgents(() => endpoint.connectedCount())
  const scheduler = createScheduler(ctx, { lease: replica.lease })
  // Callers without a principal: a budget of failed authentications per source, and
  // their refusals audited once per source, code and window (http/stranger-limits.ts).
  const strangers = new StrangerLimits(
    {
      ...(o.limits?.strangerFailuresPerSecond !== undefined ? { perSecond: o.limits.strangerFailuresPerSecond } : {}),
      ...(o.limits?.strangerFailureBurst !== undefined ? { burst: o.limits.strangerFailureBurst } : {}),
      ...(o.limits?.strangerSources !== undefined ? { maxSources: o.limits.strangerSources } : {}),
      ...(o.limits?.strangerAuditWindowMs !== undefined ? { auditWindowMs: o.limits.strangerAuditWindowMs } : {}),
    },
    clock,
    { record: (r) => auditStranger(ctx, r), onLimited: () => metrics.httpRateLimited() },
  )
  const http: HttpServer = createHttpServer<OperatorPrincipal>({
    routes: [
      ...keysRoutes(ctx), ...intentionsRoutes(ctx), ...tokensRoutes(ctx), ...agentsRoutes(ctx, endpoint.hub), ...auditRoutes(ctx), ...loggingRoutes(ctx), ...backupRoutes(ctx, o.backupSpoolDir),
      // GET /readyz and GET /metrics: no token, never audited (http/probes.ts).
      ...probeRoutes({ readiness: allReady(storeReadiness(ctx.store), listenReadiness(replica.listening)), metrics: () => metrics.text() }),
    ],
    logger,
    ...(o.limits ? { limits: o.limits } : {}),
    authenticate: (bearer) => authenticate(ctx, bearer),
    authorize: async (principal, operation) => {
      // A route naming an operation the policy does not know is a programming
      // error; refusing it keeps a typo from becoming an open door.
      if (!OPERATION_SET.has(operation)) return { allow: false, reason: `unknown operation ${operation}` }
      return authorizeOperator(principal.role, operation as Operation)
    },
    strangers,
    // Refusals are audited with the code the client was answered with; so is bad
    // input on a known route (unknown field, wrong type, oversized body …). Those of
    // a caller without a principal are tallied instead of audited one by one.
    onDenied: (event) => (event.principal === null ? strangers.refused(event) : auditRefusal(ctx, event, event.error)),
    onRejected: (event) => (event.principal === null ? strangers.refused(event) : auditRefusal(ctx, event, event.error)),
    onUpgrade: (req, socket, head) => endpoint.handleUpgrade(req, socket, head),
    onAnswered: (event) => metrics.httpAnswered(event),
    ...(o.tls ? { tls: o.tls } : {}),
  })

  let address: AddressInfo
  try {
    address = await http.listen(o.host, o.port)
  } catch (e) {
    await replica.close()
    await ctx.store.close()
    ctx.sealer.wipe()
    booted.lock.release()
    const code = (e as NodeJS.ErrnoException).code ?? 'error'
    const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : code
    throw cpError('CP_ERR_LISTEN', `${o.host}:${o.port}: ${why}`, { cause: e })
  }
  if (o.runScheduler !== false) scheduler.start()
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${o.tls ? 'https' : 'http'}://${host}:${address.port}`
  logger.info({ url, dataDir: o.dataDir, store: ctx.store.backend, ...(tlsFingerprint ? { tlsFingerprint } : {}) }, 'control plane listening')

  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      logger.info('control plane shutting down')
      await http.close()
      strangers.close()
      await strangers.idle()
      await endpoint.close()
      await scheduler.stop()
      await replica.close()
      await ctx.store.close()
      ctx.sealer.wipe()
      ctx.identity.secretKey.fill(0)
      booted.lock.release()
      logger.info('control plane stopped')
    })())

  return { ctx, address, url, tlsFingerprint, endpoint, scheduler, metrics, strangers, close }
}

interface RefusedRequest {
  readonly principal: OperatorPrincipal | null
  readonly remoteAddress: string | undefined
  readonly operation: string
  readonly method: string
  readonly path: string
}

/** Audits a request the HTTP layer refused before its handler ran. */
function auditRefusal(ctx: CpContext, event: RefusedRequest, error: unknown): Promise<void> {
  const actor: Actor = event.principal ? operatorActor(event.principal) : { kind: 'anonymous', remote: event.remoteAddress }
  return auditFailure(ctx, actor, event.operation, `http:${event.method} ${event.path}`, error)
}

/** A stranger's refusal, or a window's summary of them (http/stranger-limits.ts). */
function auditStranger(ctx: CpContext, r: StrangerRecord): Promise<void> {
  const actor: Actor = { kind: 'anonymous', remote: r.source }
  if (r.kind === 'first') return auditFailure(ctx, actor, r.request.operation, r.target, r.request.error)
  const spec = (CP_ERRORS as ErrorTable)[r.code] ?? CP_ERRORS.CP_ERR_INTERNAL
  const err = new KeymeshError(r.code, spec, `${r.count} refusals from ${r.source}`)
  return auditFailure(ctx, actor, 'http.refusals', `http:remote:${r.source}`, err, { count: r.count })
}

/** Bearer token → operator principal, or null (a 401) for anything unknown, revoked or expired. */
async function authenticate(ctx: CpContext, bearer: string | undefined): Promise<OperatorPrincipal | null> {
  if (bearer === undefined) return null
  parseToken(bearer, 'operator')
  const record = await ctx.store.read((r) => r.getOperatorTokenByHash(hashTokenBytes(ctx.suite, bearer)))
  if (!record || record.revokedAt !== null) return null
  if (record.expiresAt !== null && record.expiresAt <= ctx.clock.now()) return null
  return { id: record.id, name: record.name, role: record.role }
}
