// The writes `npm run faults` makes while it breaks things, and the checks after:
//   KeyWriter   creates keys through the admin API one after another; each name the
//               control plane acknowledged (201) must exist afterwards
//   SealWriter  encrypts through the agents' local APIs (alternating); each ciphertext
//               acknowledged (200) must decrypt afterwards to its own plaintext
// A call that is not acknowledged (an error status, a refused or reset connection) is
// "refused": the caller knows it did not happen and may retry. Only acknowledged
// operations can be lost.
import { randomBytes } from 'node:crypto'

import { requestJson } from './tunnel-procs.js'

export interface Tally {
  acknowledged: number
  refused: number
  /** Acknowledged, and then missing or failing. */
  lost: number
  /** Acknowledged, and then answering something else (a decrypt to another plaintext). */
  wrong: number
  /** Refusals by kind: an error code when the answer carries one, else the error's first words. */
  refusedBy: Record<string, number>
}

export const tally = (): Tally => ({ acknowledged: 0, refused: 0, lost: 0, wrong: 0, refusedBy: {} })

export function refuse(t: Tally, e: unknown): void {
  const text = e instanceof Error ? e.message : String(e)
  const kind = /[A-Z]+_ERR_[A-Z0-9_]+/.exec(text)?.[0] ?? (/-> (\d{3})/.exec(text)?.[1] ? `HTTP ${/-> (\d{3})/.exec(text)?.[1]}` : text.split(/\s+/).slice(0, 3).join(' '))
  t.refused++
  t.refusedBy[kind] = (t.refusedBy[kind] ?? 0) + 1
}

/** Runs `step` back to back (pausing `pauseMs` between calls) until stopped. */
abstract class Writer {
  readonly tally = tally()
  #stopped = false
  #loop: Promise<void> = Promise.resolve()

  /** The pause between calls; a step may change it (no pause: as fast as the calls go). */
  constructor(public pauseMs: number) {}

  protected abstract step(n: number): Promise<void>

  start(): void {
    this.#stopped = false
    this.#loop = (async () => {
      for (let n = 0; !this.#stopped; n++) {
        // After a refusal (the control plane down, say) it waits longer before the next try.
        const ok = await this.step(n).then(() => true, (e: unknown) => void refuse(this.tally, e))
        await new Promise((r) => setTimeout(r, ok ? this.pauseMs : 250))
      }
    })()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await this.#loop
  }
}

export class KeyWriter extends Writer {
  readonly names: string[] = []
  #prefix = randomBytes(3).toString('hex')

  constructor(readonly cpUrl: string, readonly token: string, pauseMs = 100) {
    super(pauseMs)
  }

  protected async step(n: number): Promise<void> {
    const name = `fault-${this.#prefix}-${n}`
    await requestJson('POST', `${this.cpUrl}/v1/keys`, { name, type: 'aead' }, this.token)
    this.tally.acknowledged++
    this.names.push(name)
  }

  /** Checks that every acknowledged key exists; counts the missing as lost. Throws when the control plane cannot answer. */
  async verify(): Promise<number> {
    const listed = (await requestJson('GET', `${this.cpUrl}/v1/keys`, undefined, this.token)) as Array<{ name: string }> | { keys: Array<{ name: string }> }
    const keys = Array.isArray(listed) ? listed : listed.keys
    const have = new Set(keys.map((k) => k.name))
    const missing = this.names.filter((n) => !have.has(n)).length
    this.tally.lost = missing
    return missing
  }
}

export interface ApiTarget {
  readonly name: string
  readonly port: () => number
  readonly token: () => string | undefined
}

interface Sealed {
  readonly ciphertext: string
  readonly plaintext: string
  readonly context: Record<string, string>
}

export class SealWriter extends Writer {
  readonly sealed: Sealed[] = []

  constructor(readonly targets: readonly ApiTarget[], readonly key: string, pauseMs = 20) {
    super(pauseMs)
  }

  protected async step(n: number): Promise<void> {
    const t = this.targets[n % this.targets.length] as ApiTarget
    const plaintext = randomBytes(64).toString('base64')
    const context = { n: String(n) }
    const r = (await requestJson('POST', `http://127.0.0.1:${t.port()}/v1/encrypt`, { key: this.key, plaintext, context }, t.token())) as { ciphertext: string }
    this.tally.acknowledged++
    this.sealed.push({ ciphertext: r.ciphertext, plaintext, context })
  }

  /**
   * Decrypts every acknowledged ciphertext through `via` (in batches): a different
   * plaintext counts as wrong, an item that fails as lost. Returns the items' error codes.
   */
  async verify(via: ApiTarget): Promise<Record<string, number>> {
    const codes: Record<string, number> = {}
    let lost = 0
    let wrong = 0
    for (let i = 0; i < this.sealed.length; i += 500) {
      const part = this.sealed.slice(i, i + 500)
      const r = (await requestJson('POST', `http://127.0.0.1:${via.port()}/v1/decrypt`, { items: part.map((s) => ({ ciphertext: s.ciphertext, context: s.context })) }, via.token())) as {
        items: Array<{ ok: boolean; plaintext?: string; error?: { code: string } }>
      }
      r.items.forEach((item, k) => {
        if (!item.ok) {
          lost++
          codes[item.error?.code ?? '?'] = (codes[item.error?.code ?? '?'] ?? 0) + 1
        } else if (item.plaintext !== (part[k] as Sealed).plaintext) wrong++
      })
    }
    this.tally.lost = lost
    this.tally.wrong = wrong
    return codes
  }
}
