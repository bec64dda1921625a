// Keeps a drop's memory flat. node:crypto hands back every sealed or opened chunk in
// a fresh off-heap buffer (ChaCha20-Poly1305 has no update-into), so a 1 GiB drop
// makes 1-2 GiB of short-lived buffers. V8 frees them only when a scavenge collects
// their small JS wrappers, and the streaming loop allocates so little on the JS
// heap that scavenges come rarely: measured, 30-45 MB of dead buffers pile up
// before V8's external-memory heuristic steps in. A minor GC after each input
// read (about 1 MiB) costs well under a millisecond with a heap this small and
// keeps the peak within a few MB of the process's baseline (bench:data).
//
// `gc` is exposed by setting the flag at run time (v8.setFlagsFromString, then
// taking `gc` from a fresh context, where V8 installs it). Only the drop commands
// do this, in a short-lived CLI process; if the runtime refuses, reclaim() is a
// no-op and memory is merely less flat.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void

let gc: Gc | null | undefined

function exposedGc(): Gc | null {
  const existing = (globalThis as { gc?: Gc }).gc
  if (typeof existing === 'function') return existing
  try {
    setFlagsFromString('--expose-gc')
    const fn = runInNewContext('gc') as unknown
    return typeof fn === 'function' ? (fn as Gc) : null
  } catch {
    return null
  }
}

/** Runs a minor GC (young generation only), if the runtime allows it. */
export function reclaim(): void {
  gc ??= exposedGc()
  gc?.({ type: 'minor' })
}
