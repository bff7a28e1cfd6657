import { abortReason } from "./types.ts";

/**
 * The FIFO that mutating jobs pass through: one holds the slot at a time, at
 * most `capacity` wait behind it, and a waiter whose signal aborts (cancel,
 * timeout) leaves the line at once.
 */

export const DEFAULT_QUEUE_CAPACITY = 16;

/** The queue is full: the job is refused at once rather than waiting without bound. */
export class QueueFullError extends Error {
  override readonly name: string = "QueueFullError";

  constructor() {
    super("agent busy");
  }
}

interface Waiter {
  readonly grant: (release: () => void) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}

export class SerialQueue {
  readonly capacity: number;
  readonly #waiting: Waiter[] = [];
  #busy = false;

  constructor(capacity: number = DEFAULT_QUEUE_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`queue capacity must be a non-negative integer, got ${capacity}`);
    this.capacity = capacity;
  }

  /** True while a job holds the slot. */
  get busy(): boolean {
    return this.#busy;
  }

  /** How many jobs wait for the slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Resolves with a release function once the caller holds the slot. Rejects with
   * `QueueFullError` when `capacity` jobs already wait, and with the signal's
   * reason when it aborts first.
   */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (!this.#busy && this.#waiting.length === 0) {
      this.#busy = true;
      return Promise.resolve(this.#releaser());
    }
    if (this.#waiting.length >= this.capacity) return Promise.reject(new QueueFullError());
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: resolve,
        signal,
        onAbort: () => {
          const index = this.#waiting.indexOf(waiter);
          if (index >= 0) this.#waiting.splice(index, 1);
          reject(abortReason(signal));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** Each grant gets its own release, so releasing twice cannot free someone else's slot. */
  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (!next) {
        this.#busy = false;
        return;
      }
      next.signal.removeEventListener("abort", next.onAbort);
      next.grant(this.#releaser());
    };
  }
}
