// Reconnect delays for the control session: exponential from `minMs`, capped at
// `maxMs`, with "equal jitter" (half the step fixed, half random) so that agents
// cut off by one control-plane restart do not all come back in the same instant,
// while no agent retries sooner than `minMs`.

/**
 * The delay before attempt `failures + 1`, after `failures` (≥ 1) consecutive failures:
 * step = min(maxMs, minMs · 2^(failures-1)); delay = step · (½ + ½·random()), kept within minMs..maxMs.
 */
export function backoffDelay(failures: number, minMs: number, maxMs: number, random: () => number): number {
  const n = Math.max(1, Math.floor(failures))
  // Growth starts from at least 1 ms (a zero minimum must still reach the cap), and
  // the exponent is capped so that the product stays finite.
  const step = Math.min(maxMs, Math.max(minMs, 1) * 2 ** Math.min(n - 1, 52))
  const x = random()
  const r = Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0.5
  return Math.round(Math.min(maxMs, Math.max(minMs, step * (0.5 + 0.5 * r))))
}
