// The agent's configuration: one frozen, validated object built at the edge (the
// CLI merges flags, KEYMESH_* environment variables and a config file, flags
// winning) and handed to every module. Nothing under agent/src reads process.env
// or process.argv.
import { HOUR, MINUTE, SECOND } from './clock.js'
import { DEFAULT_PREAUTH_LIMITS, type PreauthLimits } from '../../platform/src/index.js'

export interface HostPort {
  readonly host: string
  readonly port: number
}

/** `--connect PEER=HOST:PORT`: a local listener whose connections go to service PEER. */
export interface ConnectTarget extends HostPort {
  readonly peerService: string
}

/** Where the local API listens: TCP (loopback by default) or a unix socket. */
export type ApiListen = HostPort | { readonly socketPath: string }

/** Every limit is an option with a default (STYLE.md, rule 5). */
export interface AgentLimits extends PreauthLimits {
  /** Re-handshake a tunnel after this long on one key (default 2 minutes). */
  readonly rehandshakeAfterMs: number
  /** ...or after this many records in either direction (default 2^32). */
  readonly rehandshakeAfterRecords: number
  /** A tunnel handshake (either side) must complete within this (default 10 s). */
  readonly handshakeTimeoutMs: number
  /** Dialing a peer agent gives up after this and tries the next one (default 3 s). */
  readonly dialTimeoutMs: number
  /** A peer that could not be reached is skipped for this long (default 10 s). */
  readonly unreachableBackoffMs: number
  /** Open tunnels, both directions together (default 10,000). */
  readonly maxTunnels: number
  /**
   * The tunnel listener's first message must come within this (default 2 s; the
   * handshake timeout runs from then on). The other pre-authentication limits are
   * PreauthLimits' (platform's preauth-gate.ts), a source being the peer's IP address.
   */
  readonly helloTimeoutMs: number
  /** Bytes queued towards one side before its source is paused (default 1 MiB). */
  readonly highWaterBytes: number
  /** Usage spool size; beyond it new events are dropped with a warning (default 64 MiB). */
  readonly spoolMaxBytes: number
  /** Usage events are batched for at most this long (default 1 s). */
  readonly usageFlushMs: number
  /** Control-plane reconnect backoff: first delay and cap (defaults 250 ms, 30 s), jittered. */
  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
  /**
   * After losing an established control session (the control plane restarted, its
   * replica died), reconnect attempts come every reconnectMinMs..reconnectResyncMaxMs,
   * drawn at random (default up to 1 s), for reconnectResyncWindowMs (default 30 s);
   * then the delays grow again towards reconnectMaxMs (control/backoff.ts).
   */
  readonly reconnectResyncMaxMs: number
  readonly reconnectResyncWindowMs: number
  /**
   * A tunnel handshake that names a newer pair-key version than this agent holds, or
   * an initiating agent it does not list, makes it ask the control plane for its key
   * set and wait this long for it before refusing (default 2 s; 0 refuses at once).
   * Must stay below handshakeTimeoutMs, or the initiator gives up first.
   */
  readonly keySetWaitMs: number
  /**
   * Liveness of the control session: the agent pings the control plane when nothing
   * has arrived from it for controlPingMs (default 1.5 s), and takes it for dead when
   * nothing has arrived for controlDeadMs (default 3.5 s; must be larger): the session
   * is cut and the next --cp URL tried at once. This is what finds a replica whose
   * host vanished or whose process froze, which sends no TCP reset. Lower values fail
   * over sooner, and risk leaving a replica that is only slow (a long pause).
   */
  readonly controlPingMs: number
  readonly controlDeadMs: number
  /** How often tunnels are checked against time limits and key validity (default 1 s). */
  readonly sweepMs: number
}

export const DEFAULT_LIMITS: AgentLimits = Object.freeze({
  rehandshakeAfterMs: 2 * MINUTE,
  rehandshakeAfterRecords: 2 ** 32,
  handshakeTimeoutMs: 10 * SECOND,
  dialTimeoutMs: 3 * SECOND,
  unreachableBackoffMs: 10 * SECOND,
  maxTunnels: 10_000,
  ...DEFAULT_PREAUTH_LIMITS,
  helloTimeoutMs: 2 * SECOND,
  highWaterBytes: 1024 * 1024,
  spoolMaxBytes: 64 * 1024 * 1024,
  usageFlushMs: 1 * SECOND,
  reconnectMinMs: 250,
  reconnectMaxMs: 30 * SECOND,
  reconnectResyncMaxMs: 1 * SECOND,
  reconnectResyncWindowMs: 30 * SECOND,
  keySetWaitMs: 2 * SECOND,
  controlPingMs: 1_500,
  controlDeadMs: 3_500,
  sweepMs: 1 * SECOND,
})

/** Upper bound used to validate durations given in config (a day is far beyond any sane value). */
export const MAX_DURATION_MS = 24 * HOUR

export interface AgentConfig {
  /** Control-plane base URLs (http://, https://, ws:// or wss://), tried in order. */
  readonly cpUrls: readonly string[]
  /** The control plane's pinned static public key (32 bytes). */
  readonly cpKey: Uint8Array
  /**
   * How an https:// or wss:// control plane's certificate is checked (--cp-fingerprint,
   * --ca-file); the default trust store when absent. TLS is in addition to the Noise
   * session pinned by cpKey.
   */
  readonly cpTrust?: { readonly ca?: string; readonly fingerprint?: string }
  readonly service: string
  /** One-time join token; needed only until the agent is enrolled. */
  readonly joinToken?: string
  readonly stateDir: string
  /** Where peer agents' tunnels arrive (WebSocket). */
  readonly tunnelListen: HostPort
  /** The URL peers are told to dial (ws://...); derived from tunnelListen when absent. */
  readonly advertise?: string
  /** The local service that inbound tunnels are forwarded to. */
  readonly expose?: HostPort
  readonly connect: readonly ConnectTarget[]
  readonly api?: ApiListen
  /** --api-allow-remote: a non-loopback TCP --api is refused without it (the token still guards it). */
  readonly apiAllowRemote?: boolean
  readonly logLevel: string
  readonly limits: AgentLimits
}

// ---- HOST:PORT ------------------------------------------------------------
// The same spelling as the control plane's --listen (cli/commands/control-plane.ts),
// written again here because agent/ may not import the CLI. Stricter on the host:
// a DNS name or IPv4 literal, or an IPv6 literal in brackets, nothing else, so a
// path or URL given by mistake is refused rather than handed to the resolver.

const HOST_PORT_RE = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})?)):(\d{1,5})$/
const IPV6_RE = /^[0-9A-Fa-f:.]{2,45}$/

/** Parses `HOST:PORT` (`[v6]:PORT` for IPv6); undefined when it is not that form or the port is past 65535. */
export function parseHostPort(text: string): HostPort | undefined {
  const m = HOST_PORT_RE.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  const host = (m[1] ?? m[2]) as string
  if (port > 65535) return undefined
  if (m[1] !== undefined && (!IPV6_RE.test(host) || !host.includes(':'))) return undefined
  return { host, port }
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatHostPort(a: HostPort): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
}

/** True for the any-address hosts, which cannot be dialled and so need an advertised URL. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || /^[0:]+$/.test(host)
}

/** True for hosts that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(host)
}
