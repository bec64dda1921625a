// The control plane assembled: bind the port (or take it bound), open the data
// directory and the store, build the context, then get the store key (custody/provider.ts) — or start
// sealed until `keymesh unseal` (custody/keyring.ts) — serve the admin API and the
// agent WebSocket endpoint on one port, and run the scheduler while unsealed. `close()` shuts down in order: stop taking work, let in-flight
// requests finish, close agent sessions, stop the scheduler, release the
// scheduler lease and the LISTEN connection (cluster/replica.ts), close the store.
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
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
import { openInstallation, unlockStore, type Unlocked } from './bootstrap.js'
import type { AuditLog } from './audit.js'
import { custodyRoutes, SEALED_OPERATIONS } from './api/custody.js'
import { Keyring } from './custody/keyring.js'
import { openCustody } from './custody/provider.js'
import { startReplica } from './cluster/replica.js'
import { systemClock, type TimerClock } from '../../platform/src/index.js'
import { watchClock } from './clock-audit.js'
import { settings as makeSettings, type Actor, type CpContext, type CpSettings } from './context.js'
import { ElapsedLedger } from './elapsed-ledger.js'
import { CP_ERRORS, cpError } from './errors.js'
import type { ChangeBus } from './events.js'
import { probeRoutes } from './http/probes.js'
import { bindPort, type BoundPort } from './http/bound-port.js'
import { createHttpServer, type HttpLimits, type HttpServer } from './http/server.js'
import { checkServerTls, type ServerTls } from './http/tls.js'
import { StrangerLimits, type StrangerRecord } from './http/stranger-limits.js'
import { CpMetrics } from './metrics.js'
import { auditFailure } from './operation.js'
import { authorizeOperator, hashTokenBytes, OPERATIONS, parseToken, type Operation } from './policy.js'
import { AuditWatch } from './health/audit-watch.js'
import { IntegrityWatch } from './health/integrity-watch.js'
import { WriteHealth } from './health/write-health.js'
import { listenReadiness, readinessReport, storeReadiness } from './readiness.js'
import { createScheduler, type Scheduler } from './scheduler.js'
import { KmsService } from './services/kms.js'
import type { Store } from './store/store.js'
import { createConsole, type ConsoleOptions } from './ui/console.js'

export interface ControlPlaneOptions {
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly masterKeyFile?: string | undefined
  readonly masterKeyEnv?: string | undefined
  /**
   * Where development master keys live (custody/dev-key.ts): the CLI passes a per-user
   * config directory. Without it, a new installation needs a given key (or init).
   */
  readonly keyDir?: string | undefined
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
  /**
   * The port, bound by the caller before it wrote anything (the CLI binds, then makes
   * its TLS certificate); the control plane owns it from here. Else host:port is bound first thing.
   */
  readonly listener?: BoundPort
  /** The operator console at /ui/ (ui/console.ts): session lifetime, live feed timing. */
  readonly console?: ConsoleOptions
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
  /** Sealed or unsealed (custody/keyring.ts). */
  readonly keyring: Keyring
  /** What /readyz and the health metrics read: store writes, SQLite integrity (absent on PostgreSQL), the audit chain. */
  readonly health: { readonly writes: WriteHealth; readonly integrity: IntegrityWatch | undefined; readonly audit: AuditWatch }
  close(): Promise<void>
}

const OPERATION_SET: ReadonlySet<string> = new Set(OPERATIONS)

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const clock = o.clock ?? systemClock
  const suite = o.suite ?? nodeSuite
  const logger = o.logger
  // Checked before anything is opened: a certificate that cannot be served is the operator's to fix.
  const tlsFingerprint = o.tls === undefined ? undefined : checkServerTls(o.tls)
  // The port is bound before anything is made (the data directory, the store, a
  // development key, the admin token): a start that cannot listen leaves nothing behind.
  const bound = o.listener ?? await bindPort(o.host, o.port)
  const boot = { dataDir: o.dataDir, suite, clock, logger, ...(o.store ? { store: o.store } : {}), storeUrl: o.storeUrl }
  const opened = await openInstallation(boot).catch((e: unknown) => {
    bound.close()
    throw e
  })
  const cpSettings = makeSettings(o.settings)
  // The store tells `writes` how each write transaction went, so a failing one flips readiness (health/write-health.ts).
  const writes = new WriteHealth({ clock, logger, probeIntervalMs: cpSettings.writeProbeIntervalMs, onDamage: () => integrity?.suspect() })
  const store = opened.store
  writes.watch(store)
  const health = store.health
  const integrity = health
    ? new IntegrityWatch({ file: health.file, check: () => health.integrityCheck(), clock, logger, intervalMs: cpSettings.integrityCheckIntervalMs })
    : undefined
  // A damaged SQLite file refuses the start, naming the file and the fix.
  await integrity?.atStart(cpSettings.integrityStartTimeoutMs).catch(async (e: unknown) => {
    bound.close()
    integrity.close()
    await opened.store.close()
    opened.lock.release()
    throw e
  })
  integrity?.start()
  // The audit chain verified on a schedule, from where the last pass stopped (health/audit-watch.ts).
  const auditWatch = new AuditWatch({ store, audit: () => unlocked?.audit ?? null, clock, logger, intervalMs: cpSettings.auditVerifyIntervalMs })
  const stopHealth = async (): Promise<void> => {
    integrity?.close()
    await Promise.all([writes.close(), auditWatch.close()])
  }
  // On a shared store: the LISTEN bus (started before serving) and the scheduler lease.
  const replica = await startReplica({ store, logger, random: suite.randomBytes, bus: o.bus, resyncIntervalMs: cpSettings.resyncIntervalMs }).catch(async (e: unknown) => {
    bound.close()
    await stopHealth()
    await opened.store.close()
    opened.lock.release()
    throw e
  })
  const metrics = new CpMetrics()
  // Counted from here: the time this process observes, for deadlines that destroy material.
  const elapsed = new ElapsedLedger({ store: opened.store, clock, logger, writer: Buffer.from(suite.randomBytes(8)).toString('hex') })
  await elapsed.load().catch((err: unknown) => logger.warn({ err }, 'could not read the elapsed ledger; counting from the first scheduler pass'))
  // What the store key opens: absent while sealed (custody/keyring.ts). The context's
  // keyed parts answer CP_ERR_SEALED then; the gate below keeps requests from them.
  let unlocked: (Unlocked & { audit: AuditLog }) | undefined
  const keyed = (): Unlocked & { audit: AuditLog } => {
    if (!unlocked) throw cpError('CP_ERR_SEALED')
    return unlocked
  }
  const ctx: CpContext = {
    store,
    suite,
    clock,
    // Stable objects that services may keep (kms-audit.ts does), forwarding to the keys of the moment.
    sealer: forward(() => keyed().sealer),
    audit: forward(() => keyed().audit),
    get identity() { return keyed().identity },
    bus: replica.bus,
    logger,
    settings: cpSettings,
    elapsed,
  }

  const kms = o.kms?.(ctx) ?? new KmsService(ctx)
  const endpoint = createAgentEndpoint(ctx, {
    ...o.agentEndpoint,
    kms,
    onHandshakeFailure: (code) => metrics.handshakeFailed(code),
    onPreauthRefusal: (code) => metrics.preauthRefused(code),
  })
  metrics.watchAgents(() => endpoint.connectedCount())
  metrics.watchHealth({ writes, integrity, audit: auditWatch })
  const scheduler = createScheduler(ctx, { lease: replica.lease })
  const keyring = new Keyring({
    store,
    suite,
    clock,
    logger,
    unlock: async (storeKey) => {
      const u = await unlockStore(boot, store, storeKey)
      // Every audit entry is counted and timed on its way in (metrics.ts).
      unlocked = { ...u, audit: metrics.instrumentAudit(u.audit) }
      if (o.runScheduler !== false) scheduler.start()
      auditWatch.start()
      return unlocked.audit
    },
    lock: async () => {
      await scheduler.stop()
      for (const session of endpoint.hub.sessions()) session.terminate(cpError('CP_ERR_SEALED'))
      unlocked?.wipe()
      unlocked = undefined
    },
  })
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
    { record: (r) => (unlocked ? auditStranger(ctx, r) : sealedRefusal(logger, r)), onLimited: () => metrics.httpRateLimited() },
  )
  const readiness = readinessReport(
    {
      store: storeReadiness(ctx.store),
      writes: () => writes.readiness(),
      ...(integrity ? { integrity: () => integrity.readiness() } : {}),
      replicas: listenReadiness(replica.listening),
    },
    () => ({ auditChain: auditWatch.report(), ...(integrity ? { integrityCheck: integrity.report() } : {}) }),
  )
  let url = ''
  const operatorConsole = createConsole({
    ctx,
    tls: o.tls !== undefined,
    self: {
      id: replica.replicaId,
      url: () => url,
      readiness: async () => (await readiness()).overall,
      sealed: () => keyring.sealed,
      connectedAgents: () => endpoint.hub.sessions().map((s) => s.agentId),
    },
    strangers,
    authenticateToken: (token) => authenticate(ctx, token),
    custody: () => ({ ...keyring.status() }),
    auditChain: () => auditWatch.report(),
  }, o.console)
  // The console's live pages look again when this replica changed something (a request
  // answered) or heard of a change (the bus); another replica's entries arrive by polling.
  const unsubscribeConsole = replica.bus.subscribe(() => operatorConsole.nudge())
  const http: HttpServer = createHttpServer<OperatorPrincipal>({
    routes: [
      ...operatorConsole.routes,
      ...keysRoutes(ctx), ...intentionsRoutes(ctx), ...tokensRoutes(ctx), ...agentsRoutes(ctx, endpoint.hub), ...auditRoutes(ctx), ...loggingRoutes(ctx), ...backupRoutes(ctx, o.backupSpoolDir),
      ...custodyRoutes(ctx, keyring, strangers),
      // GET /readyz and GET /metrics: no token, never audited (http/probes.ts).
      ...probeRoutes({
        readiness,
        metrics: () => metrics.text(),
        sealed: () => (keyring.sealed ? { ...keyring.status() } : null),
        identity: () => ctx.identity.publicKey,
        suite,
      }),
    ],
    logger,
    ...(o.limits ? { limits: o.limits } : {}),
    // A bearer token, or else the console's session cookie (ui/session.ts).
    authenticate: (bearer, request) => (bearer !== undefined ? authenticate(ctx, bearer) : operatorConsole.authenticate(request)),
    authorize: async (principal, operation) => {
      // A change made with a console session carries its CSRF token (CP_ERR_CONSOLE_CSRF: a 403, audited).
      operatorConsole.checkChange(principal)
      // A route naming an operation the policy does not know is a programming
      // error; refusing it keeps a typo from becoming an open door.
      if (!OPERATION_SET.has(operation)) return { allow: false, reason: `unknown operation ${operation}` }
      return authorizeOperator(principal.role, operation as Operation)
    },
    strangers,
    // While sealed: probes, seal-status and unseal only.
    gate: (route) => {
      if (keyring.sealed && route.probe !== true && !SEALED_OPERATIONS.has(route.operation)) throw cpError('CP_ERR_SEALED')
    },
    // Refusals are audited with the code the client was answered with; so is bad
    // input on a known route (unknown field, wrong type, oversized body …). Those of
    // a caller without a principal are tallied instead of audited one by one.
    onDenied: (event) => (event.principal === null ? strangers.refused(event) : auditRefusal(ctx, event, event.error)),
    onRejected: (event) => (event.principal === null ? strangers.refused(event) : auditRefusal(ctx, event, event.error)),
    // A sealed control plane has no identity to answer a handshake with.
    onUpgrade: (req, socket, head) => (keyring.sealed ? refuseSealed(socket) : endpoint.handleUpgrade(req, socket, head)),
    onAnswered: (event) => {
      metrics.httpAnswered(event)
      operatorConsole.nudge()
    },
    ...(o.tls ? { tls: o.tls } : {}),
  })

  let address: AddressInfo
  try {
    address = await http.serve(bound)
  } catch (e) {
    bound.close()
    unsubscribeConsole()
    await replica.close()
    await stopHealth()
    await ctx.store.close()
    opened.lock.release()
    throw e
  }
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  url = `${o.tls ? 'https' : 'http'}://${host}:${address.port}`
  const keyOptions = { store, dataDir: o.dataDir, suite, logger, masterKeyFile: o.masterKeyFile, masterKeyEnv: o.masterKeyEnv, keyDir: o.keyDir }
  try {
    const opening = await openCustody(keyOptions)
    await keyring.start(opening.custody, opening.sealed ? null : opening.storeKey)
  } catch (e) {
    unsubscribeConsole()
    await http.close()
    strangers.close()
    await keyring.close()
    await endpoint.close()
    await replica.close()
    await stopHealth()
    await ctx.store.close()
    opened.lock.release()
    throw e
  }
  const clockWatch = watchClock(ctx, clock, () => unlocked !== undefined)
  metrics.watchClock(() => clockWatch.jumps)
  operatorConsole.start()
  if (keyring.sealed) logger.warn({ url, ...keyring.status() }, 'control plane is sealed: keymesh unseal with the shares of this installation')
  logger.info({ url, dataDir: o.dataDir, store: ctx.store.backend, ...(tlsFingerprint ? { tlsFingerprint } : {}) }, 'control plane listening')

  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      logger.info('control plane shutting down')
      clockWatch.stop()
      // Open event streams are answers in flight: they end first, or close() would wait for them.
      unsubscribeConsole()
      operatorConsole.close()
      await http.close()
      strangers.close()
      await strangers.idle()
      await endpoint.close()
      await scheduler.stop()
      await stopHealth()
      await replica.close()
      await keyring.close()
      await ctx.store.close()
      opened.lock.release()
      logger.info('control plane stopped')
    })())

  return { ctx, address, url, tlsFingerprint, endpoint, scheduler, metrics, strangers, keyring, health: { writes, integrity, audit: auditWatch }, close }
}

/** An object whose every method is `current()`'s at the time of the call (unless set on it: tests wrap one). */
function forward<T extends object>(current: () => T): T {
  return new Proxy({} as T, {
    get: (own, name) => {
      if (Reflect.has(own, name)) return Reflect.get(own, name) as unknown
      const target = current()
      const value = Reflect.get(target, name) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** An agent's upgrade while sealed: 503, nothing else. */
function refuseSealed(socket: Duplex): void {
  socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
}

/** While sealed the audit log cannot be written (its key is sealed): refusals are logged instead. */
function sealedRefusal(logger: Logger, r: StrangerRecord): Promise<void> {
  logger.warn(r.kind === 'first' ? { source: r.source, code: r.request.error.code } : { source: r.source, code: r.code, count: r.count }, 'refused a caller while sealed')
  return Promise.resolve()
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
