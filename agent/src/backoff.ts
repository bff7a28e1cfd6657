/**
 * Reconnect delays: exponential with full jitter (delay = random(0, min(cap,
 * base · 2^attempt))). Full jitter spreads a fleet that lost the control plane at
 * the same moment over the whole window, instead of having it return in waves.
 */

export interface BackoffOptions {
  readonly baseMs?: number;
  readonly capMs?: number;
  /** A number in [0, 1); injectable so tests can pin the jitter. */
  readonly random?: () => number;
}

export const DEFAULT_BACKOFF_BASE_MS = 1_000;
export const DEFAULT_BACKOFF_CAP_MS = 60_000;

/** The upper bound of the delay before retry number `attempt` (0-based). */
export function backoffCeiling(attempt: number, baseMs: number, capMs: number): number {
  // 2^attempt overflows to Infinity long before it matters; min() still caps it.
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = Math.max(0, options.baseMs ?? DEFAULT_BACKOFF_BASE_MS);
    this.capMs = Math.max(0, options.capMs ?? DEFAULT_BACKOFF_CAP_MS);
    this.#random = options.random ?? Math.random;
  }

  /** Failures since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next retry; each call counts one more failure. */
  next(): number {
    const ceiling = backoffCeiling(this.#attempt, this.baseMs, this.capMs);
    this.#attempt++;
    return Math.floor(this.#random() * ceiling);
  }

  /** After a connection that stayed up long enough, failures start from the base again. */
  reset(): void {
    this.#attempt = 0;
  }
}
