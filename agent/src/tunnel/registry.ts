// Every live tunnel, and the policy that keeps open tunnels in step with the key
// set: the registry is the TunnelHost of every tunnel, subscribes to key set
// changes and runs a periodic sweep.
//
// On every change of a pair (and on every sweep), for each open tunnel of it:
//   - pair gone, or this tunnel's direction no longer allowed  AGENT_ERR_NO_INTENTION
//   - peer agent no longer listed (revoked)                     AGENT_ERR_PEER_REVOKED
//   - its key version no longer usable (past notAfter, gone)    AGENT_ERR_KEY_EXPIRED
//   - a re-handshake in flight for longer than the handshake
//     timeout                                                   AGENT_ERR_HANDSHAKE_TIMEOUT
//   - initiator: the current version differs, or the tunnel has
//     used its keys for rehandshakeAfterMs / rehandshakeAfterRecords
//     → in-band re-handshake (retried on the next sweep when it cannot start now)
// Tunnels end at once on a change (so a revoked peer's tunnels end within
// milliseconds of the update, well inside the 1 s the issue allows).
//
// Rotation settling: the control plane pushes a new version to both agents of a
// pair at once, but one may hear of it a little before the other. An initiator
// that re-handshook (or dialed) with the new version at once could reach a
// responder that does not hold it yet, which refuses (AGENT_ERR_KEY_VERSION) and
// so drops the connection. So for limits.sweepMs after it sees a new current
// version, an initiator keeps using the version it replaced (still usable: it is
// within its grace period); live tunnels move at the first sweep after that, under
// the rule below.
// The settling time and the re-handshake timers are elapsed time (the clock's
// monotonic reading): a wall clock stepped back three hours neither keeps an agent
// on the replaced version nor holds off its re-handshakes.
// A responder that refuses the new version anyway (it missed the push: its
// control plane died mid-rotation) restarts the settling time (versionRefused).
//
// Live tunnels are held to a stricter rule, since a responder that does not hold
// the version refuses the in-band re-handshake and the tunnel ends: an initiator
// moves a live tunnel to a new version only when
//   - the peer agent has shown it holds it: a tunnel with it opened or re-keyed
//     (either direction), or the control plane said the agent connected (peerUp:
//     it then has the control plane's whole key set) after the version came; or
//   - the version came as a push on the control session that is still up, and no
//     peer has refused it since (the control plane is pushing it to every agent;
//     the rule before this one, and the usual case); or
//   - rehandshakeAfterMs passed since it came (or was last refused), or the
//     version in use leaves its grace within two sweeps (as elapsed time: a step
//     of the wall clock moves it neither early nor late).
// Otherwise a tunnel due for a re-handshake by time or records re-handshakes on the
// version it uses. So a control plane that dies between the pushes of a rotation
// ends no live tunnel: they move once the peer has caught up.
import type { Logger } from 'pino'

import type { KeymeshError } from '../../../protocol/src/index.js'
import type { TimerClock, CancelTimer } from '../clock.js'
import type { AgentLimits } from '../config.js'
import { agentError } from '../errors.js'
import type { KeySet, KeySetChange, PairVersion } from '../keyset.js'
import { outboundKeys } from './authorize.js'
import type { TunnelReporter } from './report.js'
import type { Tunnel, TunnelHost } from './tunnel.js'

export interface TunnelStats {
  open: number
  inbound: number
  outbound: number
  byPair: Record<string, { open: number; keyVersions: number[] }>
  /** Plaintext bytes received from / sent to peer agents, over every tunnel since start. */
  bytesIn: number
  bytesOut: number
  handshakeFailures: number
  rejections: number
  /** The same two counts by error code (codes outside the known tables count as OTHER). */
  handshakeFailuresByCode: Record<string, number>
  rejectionsByCode: Record<string, number>
  /** Inbound handshakes in progress. */
  pending: number
  /** Bytes the tunnels hold in memory now (queued towards either side). */
  bufferedBytes: number
}

export interface RegistryDeps {
  readonly keyset: KeySet
  readonly clock: TimerClock
  readonly limits: AgentLimits
  readonly logger: Logger
  readonly reporter: TunnelReporter
  /**
   * Which control session is up (a number that changes with each new session), or
   * undefined when none is (ControlClient.epoch). Default: always the same one.
   */
  readonly controlEpoch?: () => number | undefined
}

export class TunnelRegistry implements TunnelHost {
  readonly clock: TimerClock
  readonly limits: AgentLimits
  readonly logger: Logger
  readonly reporter: TunnelReporter
  readonly #keyset: KeySet
  /** Every tunnel not yet done. */
  readonly #live = new Set<Tunnel>()
  /** Inbound tunnels still in their handshake. */
  readonly #pending = new Set<Tunnel>()
  readonly #byPair = new Map<string, Set<Tunnel>>()
  #openCount = 0
  #closedBytesIn = 0
  #closedBytesOut = 0
  /**
   * pairId → the current version last seen, since when (or its last refusal), the
   * version it replaced, and the control session it came on as a push (undefined:
   * it came otherwise, or a peer has refused it since).
   */
  readonly #currents = new Map<string, { version: number; since: number; replaced: number | undefined; epoch: number | undefined }>()
  /** pairId → peer agent id → the newest version that agent has shown it holds. */
  readonly #held = new Map<string, Map<string, number>>()
  readonly #epoch: () => number | undefined
  #unsubscribe: (() => void) | undefined
  #cancelSweep: CancelTimer | undefined

  constructor(d: RegistryDeps) {
    this.#keyset = d.keyset
    this.clock = d.clock
    this.limits = d.limits
    this.logger = d.logger
    this.reporter = d.reporter
    this.#epoch = d.controlEpoch ?? (() => 0)
  }

  /** Live tunnels, open or in their handshake. */
  get size(): number {
    return this.#live.size
  }

  get pendingInbound(): number {
    return this.#pending.size
  }

  start(): void {
    if (this.#unsubscribe) return
    for (const p of this.#keyset.pairs()) this.#noteCurrent(p.pairId)
    this.#unsubscribe = this.#keyset.subscribe((c) => this.#onChange(c))
    this.#arm()
  }

  stop(): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    this.#cancelSweep?.()
    this.#cancelSweep = undefined
  }

  /** Starts tracking a tunnel just built (a no-op if it already ended). */
  track(t: Tunnel): void {
    if (t.phase === 'done') return
    this.#live.add(t)
    if (t.role === 'responder' && t.phase === 'handshake') this.#pending.add(t)
  }

  /** Ends every live tunnel with `err` (shutdown). */
  terminateAll(err: KeymeshError): void {
    for (const t of [...this.#live]) t.terminate(err)
  }

  /** Resets every live tunnel's local socket, nothing else (the process is exiting). */
  resetLocalSockets(): void {
    for (const t of this.#live) t.resetLocal()
  }

  /**
   * The version an initiator uses for `pairId` now: the current one, or during
   * the settling time after a rotation the one it replaced (see the header).
   */
  outboundVersion(pairId: string): PairVersion | undefined {
    this.#noteCurrent(pairId)
    const current = this.#keyset.current(pairId)
    const seen = this.#currents.get(pairId)
    if (current !== undefined && seen !== undefined && seen.replaced !== undefined && this.clock.monotonicMs() - seen.since < this.limits.sweepMs) {
      const replaced = this.#keyset.version(pairId, seen.replaced)
      if (replaced !== undefined) return replaced
    }
    return current
  }

  /**
   * A peer refused the current `version` of `pairId` (it has not heard of the
   * rotation yet): the settling time starts again, so new tunnels and re-handshakes
   * keep to the version it replaced a while longer.
   */
  versionRefused(pairId: string, version: number): void {
    const seen = this.#currents.get(pairId)
    if (seen !== undefined && seen.version === version && seen.replaced !== undefined) this.#currents.set(pairId, { ...seen, since: this.clock.monotonicMs(), epoch: undefined })
  }

  /**
   * The control plane says `agentId` connected: it holds the control plane's whole
   * key set, so every current version of its pairs (see the header).
   */
  peerUp(agentId: string): void {
    for (const pair of this.#keyset.pairs()) {
      const current = this.#keyset.current(pair.pairId)
      if (current !== undefined && pair.peers.some((p) => p.agentId === agentId)) this.#holds(pair.pairId, agentId, current.version)
    }
  }

  /** `pushed`: the change came as a push on the live control session (not a whole set at connect, nor the cache). */
  #noteCurrent(pairId: string, pushed = false): void {
    const current = this.#keyset.current(pairId)?.version
    if (current === undefined) return
    const seen = this.#currents.get(pairId)
    // A pair seen for the first time has nothing to settle.
    if (seen === undefined) this.#currents.set(pairId, { version: current, since: -Infinity, replaced: undefined, epoch: undefined })
    else if (seen.version !== current) {
      this.#currents.set(pairId, { version: current, since: this.clock.monotonicMs(), replaced: seen.version, epoch: pushed ? this.#epoch() : undefined })
    }
  }

  /** `agentId` has shown it holds `version` of `pairId`; live tunnels that waited for it may move now. */
  #holds(pairId: string, agentId: string | undefined, version: number): void {
    if (agentId === undefined) return
    let peers = this.#held.get(pairId)
    if (peers === undefined) this.#held.set(pairId, (peers = new Map()))
    if ((peers.get(agentId) ?? 0) >= version) return
    peers.set(agentId, version)
    const set = this.#byPair.get(pairId)
    if (set) for (const t of [...set]) if (t.peerAgent === agentId) this.#check(t)
  }

  /** May a live tunnel with `peerAgent` move from `inUse` to `target` now (see the header)? */
  #mayMove(pairId: string, peerAgent: string, inUse: number, target: number, now: number): boolean {
    if ((this.#held.get(pairId)?.get(peerAgent) ?? 0) >= target) return true
    const seen = this.#currents.get(pairId)
    if (seen === undefined || seen.version !== target) return true
    if (seen.epoch !== undefined && seen.epoch === this.#epoch()) return true
    if (now - seen.since >= this.limits.rehandshakeAfterMs) return true
    // About to leave its grace: measured as elapsed time, so that a step of this
    // agent's wall clock neither moves it early (ahead) nor late (back).
    const version = this.#keyset.version(pairId, inUse)
    const left = version === undefined ? null : this.#keyset.graceLeftMs(version)
    return left !== null && left <= 2 * this.limits.sweepMs
  }

  // --- TunnelHost ---

  opened(t: Tunnel): void {
    this.reporter.open(t.facts(), t.direction)
    this.#pending.delete(t)
    this.#live.add(t)
    const ctx = t.context as NonNullable<Tunnel['context']>
    let set = this.#byPair.get(ctx.pairId)
    if (set === undefined) this.#byPair.set(ctx.pairId, (set = new Set()))
    set.add(t)
    this.#openCount++
    this.#holds(ctx.pairId, t.peerAgent, ctx.keyVersion)
    // The key set may have changed while the handshake ran.
    this.#check(t)
  }

  rekeyed(t: Tunnel): void {
    const ctx = t.context as NonNullable<Tunnel['context']>
    this.#holds(ctx.pairId, t.peerAgent, ctx.keyVersion)
    // A rotation that arrived while this re-handshake was in flight is acted on now.
    this.#check(t)
  }

  closed(t: Tunnel, wasOpen: boolean, reason: string | undefined): void {
    if (wasOpen) {
      const durationMs = this.clock.monotonicMs() - t.openedAt
      this.reporter.close({ ...t.facts(), bytesIn: t.bytesIn, bytesOut: t.bytesOut, durationMs, reason }, t.direction)
    } else if (reason !== undefined) {
      this.reporter.failedBeforeOpen(reason, t.facts(), t.direction)
    }
    this.#live.delete(t)
    this.#pending.delete(t)
    const pairId = t.context?.pairId
    const set = pairId === undefined ? undefined : this.#byPair.get(pairId)
    if (set?.delete(t)) {
      this.#openCount--
      this.#closedBytesIn += t.bytesIn
      this.#closedBytesOut += t.bytesOut
      if (set.size === 0) this.#byPair.delete(pairId as string)
    }
  }

  stats(): TunnelStats {
    const byPair: TunnelStats['byPair'] = {}
    let inbound = 0
    let outbound = 0
    let bytesIn = this.#closedBytesIn
    let bytesOut = this.#closedBytesOut
    let bufferedBytes = 0
    for (const [pairId, set] of this.#byPair) {
      const versions = new Set<number>()
      for (const t of set) {
        if (t.role === 'initiator') outbound++
        else inbound++
        bytesIn += t.bytesIn
        bytesOut += t.bytesOut
        const v = t.context?.keyVersion
        if (v !== undefined) versions.add(v)
      }
      byPair[pairId] = { open: set.size, keyVersions: [...versions].sort((a, b) => a - b) }
    }
    for (const t of this.#live) bufferedBytes += t.bufferedBytes
    return {
      open: this.#openCount,
      inbound,
      outbound,
      byPair,
      bytesIn,
      bytesOut,
      handshakeFailures: this.reporter.handshakeFailures,
      rejections: this.reporter.rejections,
      handshakeFailuresByCode: Object.fromEntries(this.reporter.handshakeFailuresByCode),
      rejectionsByCode: Object.fromEntries(this.reporter.rejectionsByCode),
      pending: this.#pending.size,
      bufferedBytes,
    }
  }

  // --- policy ---

  #onChange(change: KeySetChange): void {
    if (change.kind === 'removed') {
      this.#currents.delete(change.pairId)
      this.#held.delete(change.pairId)
    } else if (change.kind === 'updated') this.#noteCurrent(change.pairId, true)
    else {
      const ids = new Set(change.pairIds)
      for (const id of this.#currents.keys()) if (!ids.has(id)) this.#currents.delete(id)
      for (const id of this.#held.keys()) if (!ids.has(id)) this.#held.delete(id)
      for (const id of ids) this.#noteCurrent(id)
    }
    if (change.kind === 'replaced') {
      for (const set of [...this.#byPair.values()]) for (const t of [...set]) this.#check(t)
      return
    }
    const set = this.#byPair.get(change.pairId)
    if (set) for (const t of [...set]) this.#check(t)
  }

  #arm(): void {
    this.#cancelSweep = this.clock.setTimer(this.limits.sweepMs, () => {
      this.#cancelSweep = undefined
      try {
        for (const set of [...this.#byPair.values()]) for (const t of [...set]) this.#check(t)
      } finally {
        if (this.#unsubscribe) this.#arm()
      }
    })
  }

  #check(t: Tunnel): void {
    const ctx = t.context
    if (t.phase !== 'open' || ctx === undefined) return
    const pair = this.#keyset.get(ctx.pairId)
    const initiator = t.role === 'initiator'
    if (pair === undefined || !(initiator ? pair.mayInitiate : pair.mayAccept)) {
      return t.terminate(agentError('AGENT_ERR_NO_INTENTION', `${ctx.fromService} -> ${ctx.toService}`))
    }
    const peerAgent = t.peerAgent
    if (!pair.peers.some((p) => p.agentId === peerAgent)) {
      return t.terminate(agentError('AGENT_ERR_PEER_REVOKED', `agent ${peerAgent}`))
    }
    if (this.#keyset.version(ctx.pairId, ctx.keyVersion) === undefined) {
      return t.terminate(agentError('AGENT_ERR_KEY_EXPIRED', `version ${ctx.keyVersion} of ${ctx.pairId}`))
    }
    const now = this.clock.monotonicMs()
    const started = t.rehandshakeStartedAt
    if (started !== undefined) {
      if (now - started >= this.limits.handshakeTimeoutMs) t.terminate(agentError('AGENT_ERR_HANDSHAKE_TIMEOUT', 're-handshake'))
      return
    }
    if (!initiator) return
    let target = this.outboundVersion(ctx.pairId)
    // No usable current version: keep the one in use until it expires.
    if (target === undefined) return
    const timeDue = now - t.lastHandshakeAt >= this.limits.rehandshakeAfterMs || t.recordsSinceHandshake >= this.limits.rehandshakeAfterRecords
    // A live tunnel never moves back (a settling time may pick an older version for new
    // tunnels), nor forward before its peer is known to hold the version (#mayMove).
    if (target.version < ctx.keyVersion || (target.version > ctx.keyVersion && !this.#mayMove(ctx.pairId, peerAgent as string, ctx.keyVersion, target.version, now))) {
      // Fresh keys on the version in use, if due.
      const inUse = this.#keyset.version(ctx.pairId, ctx.keyVersion)
      if (!timeDue || inUse === undefined) return
      target = inUse
    } else if (target.version === ctx.keyVersion && !timeDue) return
    const peer = this.#keyset.peer(ctx.pairId, peerAgent as string)
    if (peer === undefined) return
    if (t.rehandshake({ ...ctx, keyVersion: target.version }, outboundKeys(target, peer))) {
      this.logger.debug({ pairId: ctx.pairId, from: ctx.keyVersion, to: target.version }, 'tunnel re-handshake started')
    }
  }
}
