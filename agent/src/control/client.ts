// The agent's control-plane client: keeps one control session (session.ts) up,
// feeds the key set from it, and reconnects with jittered backoff (backoff.ts: fast
// and bounded after the loss of an established session, exponential otherwise),
// trying the configured URLs in order. Every session starts with the full key set.
//
//   stopped ──start()──▶ connecting ──first key set──▶ connected
//                            ▲   │                         │
//                            │   └──── failure ────▶ backoff ◀── session ends
//                            └──────── timer ──────────┘
//   close() from any state ──▶ stopped (for good)
//
// Contract:
//   - 'connected' means the first full key set arrived and was swapped in with one
//     keyset.replace(pairs, 'control-plane'); pushes then go to keyset.update/remove.
//   - A failure before 'connected' moves to the next URL; a session that had
//     connected and then dropped retries the same URL first, unless it ended
//     because the control plane went silent (controlDeadMs with nothing from it,
//     session.ts): a replica whose host vanished or froze would only hold the
//     reconnect up, so the next URL is tried at once.
//   - Refusals that retrying cannot change (revoked, bad join token, unknown
//     agent, another service) call onRejected with a KeymeshError whose code is the
//     CP_ERR_* code, every time the control plane answers so, and retry at the
//     maximum delay: an operator may fix it. Only refusals that came inside the
//     Noise session count; an unauthenticated close frame cannot cause one.
//   - A handshake the control plane could not read (an unauthenticated
//     PROTO_ERR_DECRYPT before the first key set: what a wrong pinned key does) makes
//     the client ask the control plane for its key over the session's TLS trust
//     (cp-identity.ts); another key than the pinned one calls onRejected with
//     AGENT_ERR_CP_KEY_MISMATCH naming both fingerprints. Retrying goes on as before.
//   - A session replaced by a newer one of this agent (CP_ERR_AGENT_REPLACED) is a
//     plain reconnect.
//   - lastError is the code of the last failure; it is cleared when a session connects.
//   - The join token is sent only while enrolled() is false. Neither hello nor any
//     message body is ever logged.
//   - onStateChange runs on every state change; callbacks that throw fail the
//     session (which then reconnects), they never escape into the socket's events.
//   - requestKeySet(pairId): the agent's set looks behind for that pair (a peer
//     offered a newer key version, or an agent it does not list). Connected: a
//     keyset.request where the control plane agreed to it (else nothing: its pushes
//     are all there is). In backoff: the attempt is made now instead of at the end of
//     the delay (at most once per reconnectMinMs), since the peer heard from a
//     control plane lately. The caller rate-limits (tunnel/catch-up.ts).
//   - onPeerUp gets the control plane's peer.up: an agent of a peer service connected.
//   - request() sends a KMS request on the connected session and resolves with its
//     answer (kms/multiplexer.ts has the rules): it fails fast with
//     AGENT_ERR_CP_UNREACHABLE while not connected, every unanswered request fails
//     so when the session drops, and with AGENT_ERR_CLOSED after close().
import type { Logger } from 'pino'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { encodeMessage, PROTOCOL_VERSION, type UsageBatch, type UsageEvent, type WelcomeMessage } from '../../../protocol/src/index.js'
import { publicKeyFingerprint } from '../../../protocol/src/index.js'
import { KeymeshError, isKeymeshError, type ControlFeature } from '../../../protocol/src/index.js'
import { speaksTls, type TlsTrust } from '../../../platform/src/index.js'
import type { CancelTimer, TimerClock } from '../clock.js'
import { DEFAULT_LIMITS } from '../config.js'
import { AGENT_ERRORS, agentError } from '../errors.js'
import type { KeySet } from '../keyset.js'
import { KmsMultiplexer, type KmsRequest, type KmsResult } from '../kms/multiplexer.js'
import { fetchControlPlaneKey } from './cp-identity.js'
import { ESTABLISHED_SESSION_MS, backoffDelay, failuresAfterResync, resyncDelay, type ReconnectPolicy } from './backoff.js'
import { ControlSession, type SessionEnd } from './session.js'

export type ControlState = 'connecting' | 'connected' | 'backoff' | 'stopped'

/** How long the probe that tells plain ws:// to a TLS port apart may take. */
const TLS_PROBE_MS = 2_000

/** The agent endpoint's path under a control-plane base URL. */
export const AGENT_PATH = '/v1/agent'

/** A control plane shedding connections by its pre-authentication limits (backoff.ts: the resync window ends). */
const SHEDDING: ReadonlySet<string> = new Set(['CP_ERR_HANDSHAKE_LIMIT', 'CP_ERR_HANDSHAKE_SOURCE_LIMIT', 'CP_ERR_HANDSHAKE_RATE'])
/** ws's text for an HTTP answer instead of the upgrade; 429 and 503 are those limits' refusals. */
const SHED_STATUS = /^Unexpected server response: (?:429|503)$/

/** Control-plane refusals that no retry can change by itself. */
export const PERMANENT_REFUSALS: ReadonlySet<string> = new Set([
  'CP_ERR_AGENT_REVOKED',
  'CP_ERR_JOIN_TOKEN',
  'CP_ERR_AGENT_UNKNOWN',
  'CP_ERR_SERVICE_MISMATCH',
])

export interface ControlClientOptions {
  /** Tried in order, moving to the next on failure (issue 6 adds failover). */
  readonly urls: readonly string[]
  readonly cpKey: Uint8Array
  /** How an https:// or wss:// control plane's certificate is checked; the default trust store when absent. */
  readonly trust?: TlsTrust
  readonly staticKey: KeyPair
  readonly service: string
  /** Sent only while not enrolled (enrolled() false). */
  readonly joinToken?: string
  readonly enrolled: () => boolean
  /** Advertised tunnel endpoint (hello.endpoint). */
  readonly endpoint?: string
  readonly agentVersion: string
  readonly keyset: KeySet
  readonly suite: CryptoSuite
  readonly clock: TimerClock
  /** For backoff jitter; default Math.random. */
  readonly random?: () => number
  readonly logger: Logger
  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
  /** After the loss of an established session: delays drawn from reconnectMinMs..this (default 1 s)... */
  readonly reconnectResyncMaxMs?: number
  /** ...for this long after the loss (default 30 s); see backoff.ts. */
  readonly reconnectResyncWindowMs?: number
  readonly handshakeTimeoutMs: number
  /** Liveness of the control session: ping after this long without a frame from the control plane... */
  readonly controlPingMs: number
  /** ...and take it for dead (terminate, fail over) after this long (> controlPingMs). */
  readonly controlDeadMs: number
  /** welcome arrived (every session); the agent saves the enrollment on the first. */
  readonly onWelcome?: (w: WelcomeMessage) => void
  /**
   * This agent cannot work with the control plane as configured: it refused the agent
   * (revoked, bad/used join token: the CP_ERR_* reason), or its key is not the pinned
   * one (AGENT_ERR_CP_KEY_MISMATCH).
   */
  readonly onRejected?: (error: KeymeshError) => void
  readonly onUsageAck?: (seq: number) => void
  /** The control plane's peer.up: `agentId` of the peer service of `pairId` connected to it. */
  readonly onPeerUp?: (pairId: string, agentId: string) => void
  /** The optional features this agent speaks (default: all it knows; tests leave some out to act as an older agent). */
  readonly features?: readonly ControlFeature[]
  /** Every state change (connected after the first key set arrived, backoff after a drop, ...). */
  readonly onStateChange?: (state: ControlState) => void
  /** KMS request limits (defaults in kms/multiplexer.ts: 10 s, 1024 on the wire, 4096 in all). */
  readonly kms?: { readonly timeoutMs?: number; readonly maxInFlight?: number; readonly maxPending?: number }
}

export interface ControlTarget {
  /** What the socket dials (may carry credentials). */
  readonly dial: string
  /** What logs and status show. */
  readonly shown: string
}

export class ControlClient {
  readonly #o: ControlClientOptions
  readonly #targets: readonly ControlTarget[]
  readonly #random: () => number
  /** Sessions whose socket has not closed yet (the live one and any still closing). */
  readonly #sockets = new Set<ControlSession>()
  readonly #kms: KmsMultiplexer
  #state: ControlState = 'stopped'
  #started = false
  #closed = false
  #session: ControlSession | undefined
  #liveUrl: string | undefined
  #lastError: string | undefined
  readonly #policy: ReconnectPolicy
  #index = 0
  /** Failed attempts since the last established session was lost (or since start). */
  #failures = 0
  /** When an established session was lost, while its resync window may still run (backoff.ts). */
  #resyncFrom: number | undefined
  /** When the live session received its first key set. */
  #syncedAt: number | undefined
  /** Sessions that received their first key set so far (epoch). */
  #synced = 0
  /** When the last attempt started (requestKeySet's early attempt waits at least reconnectMinMs). */
  #attemptAt = -Infinity
  #retry: CancelTimer | undefined

  constructor(o: ControlClientOptions) {
    if (o.urls.length === 0) throw agentError('AGENT_ERR_CONFIG', 'at least one control-plane URL is needed')
    if (!(o.reconnectMinMs >= 0 && o.reconnectMaxMs >= o.reconnectMinMs)) throw agentError('AGENT_ERR_CONFIG', 'reconnect delays must satisfy 0 ≤ min ≤ max')
    if (!(o.handshakeTimeoutMs > 0)) throw agentError('AGENT_ERR_CONFIG', 'handshakeTimeoutMs must be positive')
    if (!(Number.isSafeInteger(o.controlPingMs) && Number.isSafeInteger(o.controlDeadMs) && o.controlPingMs > 0 && o.controlDeadMs > o.controlPingMs)) {
      throw agentError('AGENT_ERR_CONFIG', 'control liveness times must be integers with 0 < controlPingMs < controlDeadMs')
    }
    const resyncMaxMs = o.reconnectResyncMaxMs ?? DEFAULT_LIMITS.reconnectResyncMaxMs
    const resyncWindowMs = o.reconnectResyncWindowMs ?? DEFAULT_LIMITS.reconnectResyncWindowMs
    if (!(resyncMaxMs >= 0 && resyncWindowMs >= 0)) throw agentError('AGENT_ERR_CONFIG', 'resync delays must not be negative')
    this.#policy = { minMs: o.reconnectMinMs, maxMs: o.reconnectMaxMs, resyncMaxMs, resyncWindowMs }
    this.#o = o
    this.#targets = o.urls.map(controlTarget)
    this.#random = o.random ?? Math.random
    this.#kms = new KmsMultiplexer({ clock: o.clock, logger: o.logger, ...o.kms })
    // Fail at construction, not on every reconnect, when hello cannot be encoded
    // (agent version or endpoint malformed); the encoding is wiped right away.
    this.#hello(o.joinToken !== undefined, o.features).fill(0)
  }

  get state(): ControlState {
    return this.#state
  }

  /** The URL of the live session (credentials removed). */
  get url(): string | undefined {
    return this.#liveUrl
  }

  /**
   * Which session is up: a number that changes with each session that received its
   * first key set, or undefined while none is (the tunnel registry's controlEpoch).
   */
  get epoch(): number | undefined {
    return this.#session?.synced === true ? this.#synced : undefined
  }

  /** Code of the last failure, for status; cleared when a session connects. */
  get lastError(): string | undefined {
    return this.#lastError
  }

  start(): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#connect()
  }

  /** The key set looks behind for `pairId`: ask the control plane, or reconnect now (see the header). */
  requestKeySet(pairId: string): void {
    if (this.#closed) return
    if (this.#state === 'connected') {
      if (this.#session?.requestKeySet(pairId) === true) this.#o.logger.debug({ pairId }, 'asked the control plane for the key set: a peer is ahead of it')
      return
    }
    if (this.#state !== 'backoff' || this.#o.clock.now() - this.#attemptAt < this.#o.reconnectMinMs) return
    this.#o.logger.info({ pairId }, 'a peer is ahead of this key set; reconnecting to the control plane now')
    this.#retry?.()
    this.#connect()
  }

  /** Sends a usage batch if connected; false when not (the reporter keeps it spooled). */
  sendUsage(batch: UsageBatch): boolean {
    if (this.#state !== 'connected' || this.#session === undefined) return false
    return this.#session.sendUsage(batch)
  }

  /**
   * Performs a KMS operation as this agent's service. Rejects with the control
   * plane's code when it refuses (CP_ERR_FORBIDDEN, CP_ERR_DECRYPT, ...), or with
   * AGENT_ERR_CP_UNREACHABLE, AGENT_ERR_BUSY, AGENT_ERR_KMS_TIMEOUT,
   * AGENT_ERR_CANCELLED, AGENT_ERR_CLOSED. Takes ownership of req.plaintext (wiped once sent).
   */
  request(req: KmsRequest, signal?: AbortSignal): Promise<KmsResult> {
    return this.#kms.request(req, signal)
  }

  /** A session is connected and can carry KMS requests now. */
  get connected(): boolean {
    return this.#state === 'connected'
  }

  /** Like request(), for many at once: one promise per request, in order; they travel together (kms.batch). */
  requestBatch(reqs: readonly KmsRequest[], signal?: AbortSignal): Promise<KmsResult>[] {
    return this.#kms.requestBatch(reqs, signal)
  }

  /** KMS requests not answered yet. */
  get kmsPending(): number {
    return this.#kms.pending
  }

  /** Stops reconnecting and closes the session (authenticated CLOSE); resolves once every socket is closed. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      this.#retry?.()
      this.#retry = undefined
      this.#session = undefined
      this.#liveUrl = undefined
      this.#kms.close()
      this.#setState('stopped')
    }
    await Promise.all([...this.#sockets].map((s) => s.close()))
  }

  #connect(): void {
    this.#retry = undefined
    if (this.#closed) return
    const target = this.#targets[this.#index % this.#targets.length] as ControlTarget
    this.#attemptAt = this.#o.clock.now()
    this.#setState('connecting')
    let session: ControlSession
    try {
      session = this.#open(target)
    } catch (err) {
      // Nothing in opening a session should throw (the URL was checked at construction);
      // if it does, it is retried like any failure rather than escaping from a timer.
      this.#o.logger.error({ url: target.shown, err: { message: err instanceof Error ? err.message : String(err) } }, 'cannot open a control session')
      this.#afterEnd(target, { code: 'AGENT_ERR_INTERNAL', message: undefined, authenticated: false, synced: false, unresponsive: false })
      return
    }
    this.#session = session
    this.#sockets.add(session)
    void session.closed.then(() => this.#sockets.delete(session))
  }

  #open(target: ControlTarget): ControlSession {
    const enrolled = this.#o.enrolled()
    const session: ControlSession = new ControlSession({
      url: target.dial,
      ...(this.#o.trust ? { trust: this.#o.trust } : {}),
      cpKey: this.#o.cpKey,
      staticKey: this.#o.staticKey,
      service: this.#o.service,
      hello: (features) => this.#hello(!enrolled, features),
      ...(this.#o.features !== undefined ? { features: this.#o.features } : {}),
      suite: this.#o.suite,
      clock: this.#o.clock,
      logger: this.#o.logger,
      handshakeTimeoutMs: this.#o.handshakeTimeoutMs,
      pingMs: this.#o.controlPingMs,
      deadMs: this.#o.controlDeadMs,
      handler: {
        welcome: (w) => {
          this.#o.logger.info({ url: target.shown, agentId: w.agentId, skewMs: w.serverTime - this.#o.clock.now() }, 'control plane welcomed the agent')
          this.#o.onWelcome?.(w)
        },
        keyset: (pairs) => {
          this.#synced++
          this.#o.keyset.replace(pairs, 'control-plane')
          this.#syncedAt = this.#o.clock.now()
          this.#lastError = undefined
          this.#liveUrl = target.shown
          this.#o.logger.info({ url: target.shown, pairs: pairs.length }, 'control plane connected; key set received')
          this.#kms.attach((req) => session.sendKms(req))
          this.#setState('connected')
        },
        update: (pair) => this.#o.keyset.update(pair),
        remove: (pairId) => this.#o.keyset.remove(pairId),
        peerUp: (pairId, agentId) => this.#o.onPeerUp?.(pairId, agentId),
        // A change to a pair this agent does not hold: its set is behind; ask for the pair.
        peers: (pairId, add, remove) => void (this.#o.keyset.updatePeers(pairId, add, remove) || this.requestKeySet(pairId)),
        usageAck: (seq) => this.#o.onUsageAck?.(seq),
        kmsResponse: (m) => this.#kms.onResponse(m),
        kmsBatchResponse: (m) => this.#kms.onBatchResponse(m),
        error: (code, message) => {
          this.#lastError = code
          this.#o.logger.warn({ url: target.shown, code, reason: message }, 'control plane reported an error')
        },
        ended: (end) => this.#onEnded(session, target, end),
      },
    })
    return session
  }

  #onEnded(session: ControlSession, target: ControlTarget, end: SessionEnd): void {
    if (this.#session !== session) return
    this.#session = undefined
    this.#liveUrl = undefined
    this.#kms.detach(agentError('AGENT_ERR_CP_UNREACHABLE', `the control session ended (${end.code})`))
    if (this.#closed) return
    this.#afterEnd(target, end)
  }

  /**
   * Backs off (backoff.ts: inside a resync window briefly, else longer after each
   * failure; the maximum after a refusal), then connects again.
   */
  #afterEnd(target: ControlTarget, end: SessionEnd): void {
    this.#lastError = end.code
    const refused = end.authenticated && PERMANENT_REFUSALS.has(end.code)
    const delayMs = refused ? backoffDelay(Number.MAX_SAFE_INTEGER, this.#o.reconnectMinMs, this.#o.reconnectMaxMs, this.#random) : this.#nextDelay(end)
    // A URL that worked is tried again first; one that did not, or went silent, gives way to the next.
    if (!end.synced || end.unresponsive) this.#index = (this.#index + 1) % this.#targets.length
    const log = { url: target.shown, code: end.code, reason: end.message, delayMs }
    if (refused) this.#o.logger.error(log, 'the control plane refused this agent; retrying at the maximum delay')
    else if (end.code === 'CP_ERR_AGENT_REPLACED') this.#o.logger.info(log, 'a newer session of this agent replaced this one; reconnecting')
    else if (end.code === 'AGENT_ERR_TLS') this.#o.logger.error(log, 'the control plane\'s TLS certificate was not accepted (AGENT_ERR_TLS); check --ca-file or --cp-fingerprint; retrying')
    else if (end.unresponsive) this.#o.logger.warn(log, 'the control plane stopped answering; trying the next')
    else this.#o.logger.warn(log, end.synced ? 'control session lost; reconnecting' : 'control plane not reachable; retrying')
    this.#setState('backoff')
    this.#syncedAt = undefined
    this.#retry = this.#o.clock.setTimer(delayMs, () => this.#connect())
    if (refused) this.#notifyRejected(end)
    if (end.message === 'ECONNRESET' && !end.synced && target.dial.startsWith('ws:')) void this.#plainToTls(target)
    if (end.code === 'PROTO_ERR_DECRYPT' && !end.authenticated && !end.synced) void this.#checkPinnedKey(target)
  }

  /** Asks the control plane for its key; another one than the pinned key is said, and handed to onRejected. */
  async #checkPinnedKey(target: ControlTarget): Promise<void> {
    const actual = await fetchControlPlaneKey(target.dial, this.#o.trust, TLS_PROBE_MS)
    if (this.#closed || this.#state === 'connected') return
    if (actual === undefined || Buffer.from(actual).equals(Buffer.from(this.#o.cpKey))) {
      this.#o.logger.debug({ url: target.shown, said: actual !== undefined }, actual === undefined ? 'the control plane did not say its key' : 'the control plane\'s key is the pinned one')
      return
    }
    const pinned = publicKeyFingerprint(this.#o.suite, this.#o.cpKey)
    const theirs = publicKeyFingerprint(this.#o.suite, actual)
    const error = agentError('AGENT_ERR_CP_KEY_MISMATCH', `the control plane at ${target.shown} has key ${theirs}, this agent pins ${pinned}: give the agent that control plane's DATA_DIR/identity.pub as --cp-key-file`)
    this.#lastError = error.code
    this.#o.logger.error({ url: target.shown, code: error.code, controlPlaneKey: theirs, pinnedKey: pinned }, 'the control plane\'s key is not the pinned one; fix --cp-key-file')
    this.#notify(error)
  }

  /** The delay after a failure or a lost session (the schedule is backoff.ts's). */
  #nextDelay(end: SessionEnd): number {
    const p = this.#policy
    const now = this.#o.clock.now()
    if (end.synced && this.#syncedAt !== undefined && now - this.#syncedAt >= ESTABLISHED_SESSION_MS) {
      this.#failures = 0
      this.#resyncFrom = now
    }
    const shed = SHEDDING.has(end.code) || SHED_STATUS.test(end.message ?? '')
    if (this.#resyncFrom !== undefined && (shed || now - this.#resyncFrom >= p.resyncWindowMs)) {
      // The window is over: the delays go on growing from resyncMaxMs.
      this.#resyncFrom = undefined
      this.#failures = failuresAfterResync(p) - 1
    }
    this.#failures++
    return this.#resyncFrom !== undefined ? resyncDelay(p, this.#random) : backoffDelay(this.#failures, p.minMs, p.maxMs, this.#random)
  }

  /**
   * A plain ws:// connection to a TLS port is dropped without an answer (ECONNRESET), which
   * reads like a network fault: ask the port for a TLS handshake, and if it answers, say so.
   */
  async #plainToTls(target: ControlTarget): Promise<void> {
    const url = new URL(target.dial)
    if (!(await speaksTls({ host: url.hostname, port: Number(url.port === '' ? 80 : url.port) }, TLS_PROBE_MS))) return
    if (this.#closed || this.#state === 'connected') return
    this.#lastError = 'AGENT_ERR_TLS'
    url.protocol = 'https:'
    url.pathname = url.pathname.replace(/\/v1\/agent$/, '')
    this.#o.logger.error({ url: target.shown, code: 'AGENT_ERR_TLS' }, `the control plane serves TLS on this port: use ${url.origin}${url.pathname === '/' ? '' : url.pathname} with --ca-file or --cp-fingerprint`)
  }

  #notifyRejected(end: SessionEnd): void {
    const spec = AGENT_ERRORS.AGENT_ERR_CP_REJECTED
    this.#notify(new KeymeshError(end.code, { message: end.message ?? spec.message, status: spec.status, closeCode: spec.closeCode }))
  }

  #notify(error: KeymeshError): void {
    try {
      this.#o.onRejected?.(error)
    } catch (err) {
      this.#o.logger.error({ code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'onRejected handler failed')
    }
  }

  #setState(state: ControlState): void {
    if (this.#state === state) return
    this.#state = state
    try {
      this.#o.onStateChange?.(state)
    } catch (err) {
      this.#o.logger.error({ code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'onStateChange handler failed')
    }
  }

  /** hello; `features` only for a control plane that offered some (session.ts). */
  #hello(withToken: boolean, features: readonly ControlFeature[] | undefined): Uint8Array {
    const o = this.#o
    try {
      return encodeMessage({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        service: o.service,
        agentVersion: o.agentVersion,
        ...(withToken && o.joinToken !== undefined ? { joinToken: o.joinToken } : {}),
        ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
        ...(features !== undefined ? { features: [...features] } : {}),
      })
    } catch (err) {
      // The error names the field, never its value.
      throw agentError('AGENT_ERR_CONFIG', `hello cannot be encoded: ${isKeymeshError(err) ? err.message : 'invalid'}`, { cause: err })
    }
  }
}

/** The agent endpoint URL for a control-plane base URL: http(s):// or ws(s)://, any path prefix kept. */
export function controlTarget(base: string): ControlTarget {
  let url: URL
  try {
    url = new URL(base)
  } catch {
    throw agentError('AGENT_ERR_CONFIG', 'control-plane URL is not a URL')
  }
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol]
  if (scheme === undefined) throw agentError('AGENT_ERR_CONFIG', 'control-plane URL must start with http://, https://, ws:// or wss://')
  if (url.search !== '' || url.hash !== '') throw agentError('AGENT_ERR_CONFIG', 'control-plane URL must not carry a query or fragment')
  url.protocol = scheme
  const path = url.pathname.replace(/\/+$/, '')
  url.pathname = path.endsWith(AGENT_PATH) ? path : path + AGENT_PATH
  const dial = url.toString()
  url.username = ''
  url.password = ''
  return { dial, shown: url.toString() }
}
