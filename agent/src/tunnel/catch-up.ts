// When an initiating agent knows more than this responder: its tunnel hello names a
// pair-key version newer than any this agent holds, or comes from an agent of the
// peer service that this agent's pair does not list yet. The initiator learned it
// from the control plane, so this agent's key set is behind: a push it has not had
// yet, or one a control plane that died mid-rotation never sent. Instead of refusing
// at once (AGENT_ERR_KEY_VERSION, AGENT_ERR_UNKNOWN_PEER), the listener asks for the
// key set (the control client's requestKeySet) and waits, up to limits.keySetWaitMs,
// for a change that lets the hello through; then it refuses as before.
//
// Bounds, since the hello is not authenticated yet and anyone can forge one:
//   - only a hello that passed every other check of the screen (addressed to this
//     service, a pair and intention that exist) is held, so the pairs asked about are
//     this agent's own;
//   - one request per pair per keySetWaitMs, whatever the number of hellos;
//   - a held hello keeps its pending slot of the listener's pre-authentication limits
//     (per source and in all), so waiting connections are bounded as handshakes are.
import type { Logger } from 'pino'

import type { TunnelContext } from '../../../protocol/src/index.js'
import type { CancelTimer, TimerClock } from '../clock.js'
import type { KeySet } from '../keyset.js'

/** The refusal codes that a fresher key set may lift (see the header). */
export function keySetBehind(keyset: KeySet, ctx: TunnelContext, code: string): boolean {
  if (code === 'AGENT_ERR_UNKNOWN_PEER') return true
  if (code !== 'AGENT_ERR_KEY_VERSION') return false
  const versions = keyset.get(ctx.pairId)?.versions ?? []
  return versions.every((v) => v.version < ctx.keyVersion)
}

export interface CatchUpDeps {
  readonly keyset: KeySet
  readonly clock: TimerClock
  /** How long a hello is held (limits.keySetWaitMs); 0 turns catching up off. */
  readonly waitMs: number
  /** Asks the control plane for the key set (ControlClient.requestKeySet). */
  readonly request: (pairId: string) => void
  readonly logger: Logger
}

export interface CatchUpWait {
  /** true once `ready()` holds after a key set change; false at the deadline or after cancel(). */
  readonly done: Promise<boolean>
  cancel(): void
}

export class KeySetCatchUp {
  readonly #d: CatchUpDeps
  /** pairId → when it was last asked for. */
  readonly #asked = new Map<string, number>()
  readonly #waits = new Set<() => void>()

  constructor(d: CatchUpDeps) {
    this.#d = d
  }

  get enabled(): boolean {
    return this.#d.waitMs > 0
  }

  /** Hellos held now. */
  get waiting(): number {
    return this.#waits.size
  }

  /** Asks for the key set of `pairId` (at most once per waitMs) and waits for `ready()` (see CatchUpWait). */
  wait(pairId: string, ready: () => boolean): CatchUpWait {
    const d = this.#d
    let settle!: (ok: boolean) => void
    const done = new Promise<boolean>((resolve) => (settle = resolve))
    let timer: CancelTimer | undefined
    let unsubscribe: (() => void) | undefined
    const finish = (ok: boolean): void => {
      if (!this.#waits.delete(cancel)) return
      timer?.()
      unsubscribe?.()
      settle(ok)
    }
    const cancel = (): void => finish(false)
    this.#waits.add(cancel)
    unsubscribe = d.keyset.subscribe(() => {
      if (ready()) finish(true)
    })
    timer = d.clock.setTimer(d.waitMs, () => finish(false))
    this.#ask(pairId)
    return { done, cancel }
  }

  /** Ends every wait (false): the listener is closing. */
  close(): void {
    for (const cancel of [...this.#waits]) cancel()
  }

  #ask(pairId: string): void {
    const d = this.#d
    const now = d.clock.now()
    const last = this.#asked.get(pairId)
    if (last !== undefined && now - last < d.waitMs) return
    this.#asked.set(pairId, now)
    // Forgotten entries keep the map to the pairs asked about lately (all of them this agent's own).
    for (const [id, at] of this.#asked) if (now - at >= d.waitMs && id !== pairId) this.#asked.delete(id)
    d.logger.info({ pairId }, 'a peer agent is ahead of this key set; asking the control plane for it')
    try {
      d.request(pairId)
    } catch (err) {
      d.logger.warn({ pairId, err: { message: err instanceof Error ? err.message : String(err) } }, 'key set request failed')
    }
  }
}
