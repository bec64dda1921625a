// GET /ui/api/events: the console's live feed as server-sent events.
//   event: audit    data: {"entries":[…],"skipped":N}   new audit entries, oldest first
//   event: ended    data: {"code":"CP_ERR_CONSOLE_SESSION"}   the session ended; the stream closes
//   : ping          every `pingMs` (default 15 s), so proxies keep the stream open
//
// What must hold:
//   - before anything is sent, and again before each batch and ping, the caller's
//     session (or bearer token) is checked: a session signed out, expired or whose
//     token was revoked gets `ended` and the stream closes (so a revoked operator's
//     open page learns nothing more);
//   - the stream ends when the client goes away, when the caller ends it (close()
//     at shutdown: http/server.ts waits for in-flight answers), and never holds more
//     than `maxQueued` batches for a slow reader (it then ends, and the page
//     reconnects and reloads).
import type { OperatorPrincipal } from '../api/principal.js'
import type { CpContext } from '../context.js'
import type { RouteResult } from '../http/router.js'
import type { ConsoleFeed, FeedBatch } from './feed.js'

export const DEFAULT_PING_MS = 15_000
const MAX_QUEUED = 64

export interface EventStreamDeps {
  readonly ctx: CpContext
  readonly feed: ConsoleFeed
  /** Whether the caller may still be told things (ui/session.ts stillActive). */
  stillActive(principal: OperatorPrincipal): Promise<boolean>
  readonly pingMs?: number
}

/** Open streams, so that shutdown can end them. */
export class EventStreams {
  readonly #deps: EventStreamDeps
  readonly #open = new Set<() => void>()

  constructor(deps: EventStreamDeps) {
    this.#deps = deps
  }

  /** The route's answer: a stream that runs until the client leaves, the session ends or close(). */
  open(principal: OperatorPrincipal, signal: AbortSignal): RouteResult {
    return {
      status: 200,
      headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' },
      stream: this.#frames(principal, signal),
    }
  }

  /** Ends every open stream (shutdown). */
  close(): void {
    for (const end of [...this.#open]) end()
  }

  async *#frames(principal: OperatorPrincipal, signal: AbortSignal): AsyncGenerator<string> {
    const { ctx, feed } = this.#deps
    const queue: FeedBatch[] = []
    let ping = false
    let ended = false
    let wake: (() => void) | undefined
    const poke = (): void => {
      wake?.()
      wake = undefined
    }
    const end = (): void => {
      ended = true
      poke()
    }
    this.#open.add(end)
    signal.addEventListener('abort', end)
    let cancelPing = (): void => {}
    const armPing = (): void => {
      cancelPing = ctx.clock.setTimer(this.#deps.pingMs ?? DEFAULT_PING_MS, () => {
        ping = true
        poke()
        armPing()
      })
    }
    let unsubscribe = (): void => {}
    try {
      unsubscribe = await feed.subscribe((batch) => {
        if (queue.length >= MAX_QUEUED) end()
        else queue.push(batch)
        poke()
      })
      armPing()
      yield 'retry: 2000\n\n'
      while (!ended) {
        if (queue.length === 0 && !ping) {
          await new Promise<void>((resolve) => (wake = resolve))
          continue
        }
        if (!(await this.#deps.stillActive(principal))) {
          yield `event: ended\ndata: ${JSON.stringify({ code: 'CP_ERR_CONSOLE_SESSION' })}\n\n`
          return
        }
        for (const batch of queue.splice(0)) {
          const last = batch.entries[batch.entries.length - 1]
          yield `${last ? `id: ${last.seq}\n` : ''}event: audit\ndata: ${JSON.stringify(batch)}\n\n`
        }
        if (ping) {
          ping = false
          yield ': ping\n\n'
        }
      }
    } finally {
      this.#open.delete(end)
      signal.removeEventListener('abort', end)
      cancelPing()
      unsubscribe()
    }
  }
}
