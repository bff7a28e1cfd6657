/**
 * Group commit for one object's SQLite writes.
 *
 * workerd commits an object's writes at the end of the event that made them: every
 * return and every dispatch result used to be a transaction of its own, with its own
 * WAL commit and fsync, two per target per job. Writes handed to `run` wait until the
 * events already queued have run, then run together, so the runtime commits them as one
 * transaction. Each caller's promise settles after its own write ran, and the output gate
 * still holds the caller's reply until that commit is durable: nothing is acknowledged
 * before it is stored.
 */
export class CoalescedWrites {
  #queue: Array<() => void> = [];
  #flushScheduled = false;

  /** Runs `write` with the others queued in this turn; a write that throws fails only its own caller. */
  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push(() => {
        try {
          resolve(write());
        } catch (error) {
          reject(error);
        }
      });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // A timer, not a microtask: RPC calls already delivered to this object run first and join the batch.
    // workerd runs it only when no event waits, so during a burst the batch is the whole burst: the
    // fewest commits, at the price of early callers waiting for the burst's end (bench/README.md).
    setTimeout(() => this.#flush(), 0);
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    this.#flushScheduled = false;
    for (const write of batch) write();
  }
}
