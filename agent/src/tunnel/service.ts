// The agent's tunnel layer as one service: the inbound listener, the outbound
// connect listeners, and the registry that keeps live tunnels in step with the
// key set. agent.ts starts it once the identity is loaded and closes it at shutdown.
//
// Contract:
//   - start() binds config.tunnelListen and every config.connect target, or
//     throws AGENT_ERR_LISTEN having released whatever it bound.
//   - close() stops accepting, ends every tunnel (an authenticated CLOSE with
//     AGENT_ERR_CLOSED where the tunnel is open), waits for their WebSockets to
//     close (cut after a short grace) and frees the ports. Idempotent.
//   - A process that exits while services run (an uncaught error, process.exit)
//     resets every tunnel's local socket first, so a local side never reads a
//     cut stream as a clean end. kill -9 cannot be covered: the kernel then ends
//     the sockets with a FIN and Node cannot set SO_LINGER (docs/operations.md).
import type { Logger } from 'pino'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import type { UsageEvent } from '../../../protocol/src/index.js'
import type { TimerClock } from '../clock.js'
import type { AgentConfig, HostPort } from '../config.js'
import { agentError } from '../errors.js'
import type { KeySet } from '../keyset.js'
import { TunnelDialer } from './dialer.js'
import { TunnelListener } from './listener.js'
import type { AdmissionStats } from './admission.js'
import { TunnelRegistry, type TunnelStats } from './registry.js'
import { TunnelReporter } from './report.js'

export type { TunnelStats }

/** The registry's figures and the listener's pre-authentication layer's (with the hellos held for the key set). */
export type TunnelServiceStats = TunnelStats & AdmissionStats & { readonly heldForKeySet: number }

export interface TunnelDeps {
  readonly config: AgentConfig
  readonly keyset: KeySet
  readonly staticKey: KeyPair
  /** undefined until enrolled: outbound connections are then refused with AGENT_ERR_NOT_READY. */
  readonly agentId: () => string | undefined
  readonly suite: CryptoSuite
  readonly clock: TimerClock
  /** Uniform in [0, 1): orders candidate peers. */
  readonly random: () => number
  readonly logger: Logger
  readonly usage: { record(e: UsageEvent): void }
  /** Asks the control plane for the key set when a peer is ahead of it (listener.ts); none: never asked. */
  readonly requestKeySet?: (pairId: string) => void
  /** Which control session is up, undefined when none (ControlClient.epoch; registry.ts): default always the same. */
  readonly controlEpoch?: () => number | undefined
}

export class TunnelService {
  readonly #registry: TunnelRegistry
  readonly #listener: TunnelListener
  readonly #dialer: TunnelDialer
  #closed: Promise<void> | undefined

  private constructor(registry: TunnelRegistry, listener: TunnelListener, dialer: TunnelDialer) {
    this.#registry = registry
    this.#listener = listener
    this.#dialer = dialer
  }

  /** Binds the tunnel listener and every connect listener. */
  static async start(deps: TunnelDeps): Promise<TunnelService> {
    const reporter = new TunnelReporter(deps.clock, deps.logger, deps.usage)
    const registry = new TunnelRegistry({
      keyset: deps.keyset,
      clock: deps.clock,
      limits: deps.config.limits,
      logger: deps.logger,
      reporter,
      ...(deps.controlEpoch ? { controlEpoch: deps.controlEpoch } : {}),
    })
    const listener = await TunnelListener.start({ ...deps, registry })
    let dialer: TunnelDialer
    try {
      dialer = await TunnelDialer.start({ ...deps, registry })
    } catch (err) {
      await listener.close()
      throw err
    }
    registry.start()
    running.add(registry)
    if (running.size === 1) process.on('exit', resetLocalSocketsAtExit)
    return new TunnelService(registry, listener, dialer)
  }

  /** The tunnel listener's bound address (port 0 resolved). */
  get tunnelAddress(): HostPort {
    return this.#listener.address
  }

  /** The bound address of the connect listener for `peerService`. */
  connectAddress(peerService: string): HostPort | undefined {
    return this.#dialer.address(peerService)
  }

  /**
   * The control plane's peer.up: `agentId` connected to it, so it is dialed again at
   * once (dialer.ts), and holds the current versions of its pairs (registry.ts).
   */
  peerUp(agentId: string): void {
    this.#dialer.peerUp(agentId)
    this.#registry.peerUp(agentId)
  }

  stats(): TunnelServiceStats {
    return { ...this.#registry.stats(), ...this.#listener.admissionStats() }
  }

  /** Stops accepting, ends every tunnel (clean CLOSE where possible), closes listeners. */
  close(): Promise<void> {
    this.#closed ??= this.#close()
    return this.#closed
  }

  async #close(): Promise<void> {
    running.delete(this.#registry)
    if (running.size === 0) process.off('exit', resetLocalSocketsAtExit)
    this.#listener.stopAccepting()
    this.#dialer.stopAccepting()
    this.#registry.stop()
    this.#registry.terminateAll(agentError('AGENT_ERR_CLOSED'))
    await Promise.all([this.#listener.close(), this.#dialer.close()])
  }
}

/** The registries of the services not yet closed in this process. */
const running = new Set<TunnelRegistry>()

/**
 * The process is exiting without closing its services (an uncaught error,
 * process.exit): reset every local socket now, while we still can. 'exit'
 * listeners run synchronously; a reset closes its socket synchronously too.
 */
export function resetLocalSocketsAtExit(): void {
  for (const registry of running) registry.resetLocalSockets()
}
