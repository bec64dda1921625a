// Reconnect delays for the control session.
//
// Normally exponential from `minMs`, capped at `maxMs`, with "equal jitter" (half
// the step fixed, half random) so that agents cut off by one control-plane outage
// do not all come back in the same instant, while no agent retries sooner than
// `minMs`.
//
// Resync: an agent that loses an established session (one that stayed up for
// ESTABLISHED_SESSION_MS: the control plane restarted or its replica died) retries
// every minMs..resyncMaxMs, drawn uniformly (default 250 ms..1 s), for
// resyncWindowMs (default 30 s) after the loss, so it has its key set again within
// about a second of the control plane being back instead of after a backoff that
// grew while it was away. Bounded three ways, for a fleet that lost one control
// plane together:
//   - spread: each attempt is drawn over the whole interval, so N agents arrive at
//     about N / (resyncMaxMs - minMs) per millisecond, not in one instant;
//   - time: after the window the delays grow again, from resyncMaxMs to maxMs;
//   - load: a control plane that sheds connections (CP_ERR_HANDSHAKE_LIMIT,
//     _SOURCE_LIMIT, _RATE, or an HTTP 429/503 before the upgrade: its
//     per-source limits) ends the window at once for that agent.
// A session that drops sooner than ESTABLISHED_SESSION_MS does not start a window
// and does not reset the failure count: a control plane that accepts and then drops
// an agent over and over sees its retries slow down, not a loop at resyncMaxMs.

/** A session that stayed up this long was established: its loss starts a resync window. */
export const ESTABLISHED_SESSION_MS = 10_000

export interface ReconnectPolicy {
  readonly minMs: number
  readonly maxMs: number
  /** Inside a resync window, delays are drawn from minMs..resyncMaxMs (capped at maxMs). */
  readonly resyncMaxMs: number
  /** How long after the loss of an established session the window lasts. */
  readonly resyncWindowMs: number
}

/**
 * The delay before attempt `failures + 1`, after `failures` (≥ 1) consecutive failures:
 * step = min(maxMs, minMs · 2^(failures-1)); delay = step · (½ + ½·random()), kept within minMs..maxMs.
 */
export function backoffDelay(failures: number, minMs: number, maxMs: number, random: () => number): number {
  const n = Math.max(1, Math.floor(failures))
  // Growth starts from at least 1 ms (a zero minimum must still reach the cap), and
  // the exponent is capped so that the product stays finite.
  const step = Math.min(maxMs, Math.max(minMs, 1) * 2 ** Math.min(n - 1, 52))
  const r = unit(random)
  return Math.round(Math.min(maxMs, Math.max(minMs, step * (0.5 + 0.5 * r))))
}

/** A delay inside a resync window: uniform in minMs..min(resyncMaxMs, maxMs). */
export function resyncDelay(p: ReconnectPolicy, random: () => number): number {
  const hi = Math.max(p.minMs, Math.min(p.resyncMaxMs, p.maxMs))
  return Math.round(p.minMs + (hi - p.minMs) * unit(random))
}

/**
 * The failure count whose backoffDelay step is resyncMaxMs (or the first above it):
 * a window that ends, or is cut short by a shedding control plane, hands over to
 * delays of resyncMaxMs/2..resyncMaxMs, then doubling, never back to minMs.
 */
export function failuresAfterResync(p: ReconnectPolicy): number {
  const ratio = Math.min(p.resyncMaxMs, p.maxMs) / Math.max(p.minMs, 1)
  return ratio <= 1 ? 1 : 1 + Math.ceil(Math.log2(ratio))
}

/** random() kept within [0, 1]; a broken source gives the middle. */
function unit(random: () => number): number {
  const x = random()
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0.5
}
