// The agent: wires identity, the key set, the control session, usage reports,
// tunnels and the local API into one running sidecar.
//
// Start-up order matters:
//   1. The state directory is locked and the identity loaded (or created), so a
//      second agent on the same directory fails before it binds anything.
//   2. The cached key set (if enrolled before) is opened, so tunnels work at once
//      even while the control plane is down.
//   3. The tunnel listener binds before the control session starts: hello carries
//      the advertised endpoint, whose port may have been chosen by the OS.
//   4. The local API (when configured) binds before the control session starts:
//      its probes answer while a first enrolment waits (/readyz: 503), and an
//      address that cannot be bound fails start-up before a join token is spent.
//   5. The control session starts. An agent that is not enrolled yet waits here
//      for its first welcome: startAgent resolves once the agent can serve, and
//      rejects if the control plane refuses the join token.
import type { Logger } from 'pino'

import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import type { KeymeshError } from '../../protocol/src/index.js'
import { formatPublicKey } from '../../protocol/src/index.js'
import { SECRET_FIELD_PATHS } from '../../protocol/src/index.js'
import { ClockWatch, describeStep, logRedaction } from '../../platform/src/index.js'
import { logLevelRoutes } from './api/log-level.js'
import { probeRoutes } from './api/probes.js'
import { AgentApiServer, type AgentStatus, type ApiRoute } from './api/server.js'
import { loadOrCreateApiToken } from './api/token.js'
import { systemClock, type TimerClock } from './clock.js'
import { formatHostPort, isLoopbackHost, type AgentConfig, type HostPort } from './config.js'
import { ControlClient } from './control/client.js'
import { agentError } from './errors.js'
import { openAgentState, saveEnrollment, type AgentState } from './identity.js'
import { KeySet } from './keyset.js'
import { kmsRoutes } from './kms/routes.js'
import { LatestWriter, loadKeySetCache, saveKeySetCache } from './keyset-cache.js'
import { AgentMetrics } from './metrics.js'
import { TunnelService } from './tunnel/service.js'
import { UsageReporter } from './usage/reporter.js'
import { AGENT_VERSION } from './version.js'

export interface AgentDeps {
  readonly logger: Logger
  readonly clock?: TimerClock
  readonly suite?: CryptoSuite
  readonly random?: () => number
  readonly agentVersion?: string
  /** Extra local API routes (the data API adds its own). */
  readonly routes?: readonly ApiRoute[]
}

export interface Agent {
  readonly config: AgentConfig
  status(): AgentStatus
  readonly tunnelAddress: HostPort
  /** The advertised tunnel endpoint sent to the control plane. */
  readonly endpoint: string
  connectAddress(peerService: string): HostPort | undefined
  readonly apiUrl: string | undefined
  readonly keyset: KeySet
  /** Sets the level of every logger of the agent (GET/PUT /v1/log-level, SIGHUP). */
  setLogLevel(level: string): void
  close(): Promise<void>
}

export function defaultEndpoint(address: HostPort): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  return `ws://${host}:${address.port}/v1/tunnel`
}

export async function startAgent(config: AgentConfig, deps: AgentDeps): Promise<Agent> {
  // loadAgentConfig refuses this too; a config built in code must not skip it.
  if (config.api !== undefined && 'port' in config.api && !isLoopbackHost(config.api.host) && config.apiAllowRemote !== true) {
    throw agentError('AGENT_ERR_CONFIG', `--api ${formatHostPort(config.api)} is not a loopback address; add --api-allow-remote to serve the API to other hosts`)
  }
  // Redacted here, whatever logger the agent is handed: credentials, fields that
  // look like secrets and the secret fields of logged messages never reach a line.
  const logger = deps.logger.child({}, { redact: logRedaction(SECRET_FIELD_PATHS.map((p) => `msg.${p}`)) })
  // Each component's logger, kept so a level set at run time (setLogLevel) reaches them all.
  const loggers: Logger[] = [logger]
  const component = (name: string): Logger => {
    const child = logger.child({ component: name })
    loggers.push(child)
    return child
  }
  const logLevel = { get: () => logger.level, set: (level: string) => { for (const l of loggers) l.level = level } }
  const clock = deps.clock ?? systemClock
  const suite = deps.suite ?? nodeSuite
  const random = deps.random ?? Math.random
  const state: AgentState = openAgentState({ stateDir: config.stateDir, service: config.service, cpKey: config.cpKey, suite })
  const cleanup: Array<() => unknown> = [() => state.release()]
  const undo = async (): Promise<void> => {
    for (const fn of cleanup.splice(0).reverse()) {
      try {
        await fn()
      } catch (err) {
        logger.warn({ err }, 'cleanup step failed')
      }
    }
  }
  try {
    if (state.enrollment === undefined && config.joinToken === undefined) {
      throw agentError('AGENT_ERR_NOT_ENROLLED', `state directory ${config.stateDir} holds no enrollment; pass --join-token once`)
    }
    const keyset = new KeySet(clock, (err) => logger.error({ err }, 'key set listener failed'))
    cleanup.push(() => keyset.wipe())
    const clockWatch = watchClock(clock, logger)
    cleanup.push(() => clockWatch.stop())
    const cacheArgs = () => ({ stateDir: config.stateDir, staticKey: state.staticKey, service: config.service, suite })
    if (state.enrollment !== undefined) {
      try {
        const cached = loadKeySetCache({ ...cacheArgs(), agentId: state.enrollment.agentId, now: clock.now() })
        if (cached !== undefined) {
          keyset.replace(cached, 'cache')
          logger.info({ pairs: cached.length }, 'using the cached key set until the control plane sends a fresh one')
        }
      } catch (err) {
        logger.warn({ code: (err as KeymeshError).code }, 'cached key set ignored')
      }
    }

    let control: ControlClient | undefined
    const usage = UsageReporter.open({
      stateDir: config.stateDir,
      clock,
      logger: component('usage'),
      maxSpoolBytes: config.limits.spoolMaxBytes,
      flushMs: config.limits.usageFlushMs,
      send: (batch) => control?.sendUsage(batch) ?? false,
    })
    cleanup.push(() => usage.close())

    const tunnels = await TunnelService.start({
      config,
      keyset,
      staticKey: state.staticKey,
      agentId: () => state.enrollment?.agentId,
      suite,
      clock,
      random,
      logger: component('tunnel'),
      usage,
      requestKeySet: (pairId) => control?.requestKeySet(pairId),
      controlEpoch: () => control?.epoch,
    })
    cleanup.push(() => tunnels.close())
    const endpoint = config.advertise ?? defaultEndpoint(tunnels.tunnelAddress)

    // Every change that came from the control plane is cached, sealed, for a restart
    // without it: written off the tunnels' event loop, one write at a time, and changes
    // that come during a write make one more write of the set as it is then.
    const cacheWriter = new LatestWriter(async () => {
      const agentId = state.enrollment?.agentId
      if (agentId === undefined || keyset.source !== 'control-plane') return
      await saveKeySetCache({ ...cacheArgs(), agentId, pairs: keyset.pairs(), now: clock.now() }).catch((err: unknown) => {
        logger.warn({ err }, 'could not write the key set cache')
      })
    })
    cleanup.push(() => cacheWriter.idle())
    cleanup.push(keyset.subscribe(() => cacheWriter.changed()))

    let enrolled!: () => void
    let refused!: (err: KeymeshError) => void
    const enrollment = new Promise<void>((resolve, reject) => {
      enrolled = resolve
      refused = reject
    })
    control = new ControlClient({
      urls: config.cpUrls,
      cpKey: config.cpKey,
      ...(config.cpTrust ? { trust: config.cpTrust } : {}),
      staticKey: state.staticKey,
      service: config.service,
      ...(config.joinToken !== undefined ? { joinToken: config.joinToken } : {}),
      enrolled: () => state.enrollment !== undefined,
      endpoint,
      agentVersion: deps.agentVersion ?? AGENT_VERSION,
      keyset,
      suite,
      clock,
      random,
      logger: component('control'),
      reconnectMinMs: config.limits.reconnectMinMs,
      reconnectMaxMs: config.limits.reconnectMaxMs,
      reconnectResyncMaxMs: config.limits.reconnectResyncMaxMs,
      reconnectResyncWindowMs: config.limits.reconnectResyncWindowMs,
      handshakeTimeoutMs: config.limits.handshakeTimeoutMs,
      controlPingMs: config.limits.controlPingMs,
      controlDeadMs: config.limits.controlDeadMs,
      onWelcome: (w) => {
        if (state.enrollment === undefined) {
          const e = { agentId: w.agentId, service: w.service, cpKey: formatPublicKey(config.cpKey), enrolledAt: clock.now() }
          saveEnrollment(config.stateDir, e)
          state.enrollment = e
          logger.info({ agentId: w.agentId, service: w.service }, 'enrolled')
        }
        enrolled()
      },
      onRejected: (err) => {
        if (err.code !== 'AGENT_ERR_CP_KEY_MISMATCH') logger.error({ code: err.code }, 'the control plane refused this agent')
        refused(err)
      },
      onUsageAck: (seq) => usage.ack(seq),
      onPeerUp: (_pairId, agentId) => tunnels.peerUp(agentId),
      onStateChange: (s) => {
        if (s === 'connected') usage.resend()
      },
    })
    const client = control
    cleanup.push(() => client.close())

    let api: AgentApiServer | undefined
    const status = (): AgentStatus => {
      const t = tunnels.stats()
      const u = usage.stats
      return {
        ready: state.enrollment !== undefined && keyset.ready,
        service: config.service,
        agentId: state.enrollment?.agentId ?? null,
        controlPlane: { state: client.state, url: client.url ?? null, lastError: client.lastError ?? null },
        keySet: { source: keyset.source ?? null, updatedAt: keyset.updatedAt ?? null },
        pairs: keyset.pairs().map((p) => ({
          pairId: p.pairId,
          peerService: p.peerService,
          currentVersion: keyset.current(p.pairId)?.version ?? null,
          mayInitiate: p.mayInitiate,
          mayAccept: p.mayAccept,
          peers: p.peers.length,
          tunnels: t.byPair[p.pairId]?.open ?? 0,
          tunnelKeyVersions: t.byPair[p.pairId]?.keyVersions ?? [],
        })),
        tunnels: { open: t.open, inbound: t.inbound, outbound: t.outbound },
        usage: { unackedBatches: u.unackedBatches, dropped: u.dropped, lostBatches: u.lostBatches, recoveredBatches: u.recoveredBatches, lossReportsPending: u.lossReportsPending },
      }
    }
    if (config.api !== undefined) {
      const metrics = new AgentMetrics({ tunnels: () => tunnels.stats(), usage: () => usage.stats, controlConnected: () => client.connected, clockJumps: () => clockWatch.jumps })
      const probes = probeRoutes({ enrolled: () => state.enrollment !== undefined, hasKeySet: () => keyset.ready, controlConnected: () => client.connected, metrics: () => metrics.text() })
      const kms = kmsRoutes({ backend: metrics.instrumentKms(client), logger: component('kms') })
      api = await AgentApiServer.start({
        listen: config.api,
        // Written even for a unix socket, where it is not needed: a client that finds it sends it.
        token: loadOrCreateApiToken(config.stateDir),
        status,
        logger: component('api'),
        routes: [...probes, ...logLevelRoutes(logLevel), ...kms, ...(deps.routes ?? [])],
        onAnswered: (route, method, code) => metrics.apiAnswered(route, method, code),
      })
      const server = api
      cleanup.push(() => server.close())
    }

    control.start()
    if (state.enrollment === undefined) await enrollment
    else enrollment.catch(() => {})

    logger.info({ service: config.service, agentId: state.enrollment?.agentId, endpoint, api: api?.url }, 'agent started')

    let closing: Promise<void> | undefined
    return {
      config,
      status,
      tunnelAddress: tunnels.tunnelAddress,
      endpoint,
      connectAddress: (peer) => tunnels.connectAddress(peer),
      apiUrl: api?.url,
      keyset,
      setLogLevel: logLevel.set,
      close: () => (closing ??= undo()),
    }
  } catch (err) {
    await undo()
    throw err
  }
}

/**
 * Watches the wall clock for steps (platform/src/clock-watch.ts). Every interval the
 * agent keeps runs on the monotonic clock, so a step changes none of them; what it
 * does change is the agent's reading of dates (the key set's notAfter, logged times),
 * and the control plane's view of the agent's skew: worth a warning.
 */
function watchClock(clock: TimerClock, logger: Logger): ClockWatch {
  const watch = new ClockWatch({
    clock,
    onJump: (j) =>
      logger.warn(
        { stepMs: Math.round(j.stepMs), wallBefore: new Date(j.wallBefore).toISOString(), wallAfter: new Date(j.wallAfter).toISOString(), elapsedMs: Math.round(j.elapsedMs) },
        `the wall clock stepped ${describeStep(j.stepMs)}; intervals (settling, re-handshakes, backoffs, liveness) run on the monotonic clock and are unaffected`,
      ),
  })
  watch.start()
  return watch
}
