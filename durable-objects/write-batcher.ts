interface QueuedWrite {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for an object that receives many small writes as separate calls (a job's
 * returns, one RPC per target). Writes queued while the object is busy run together on
 * the next turn of its event loop, in one SQLite transaction, and each caller gets its
 * own write's result. Every call's answer still leaves only after its write is durable:
 * the results are handed out after the writes, and the output gate holds what depends on
 * them until the transaction commits. Under load one commit then serves many calls
 * instead of one each, which on a real disk is one fsync instead of many.
 */
export class WriteBatcher {
  private readonly storage: DurableObjectStorage;
  private queue: QueuedWrite[] = [];
  private scheduled = false;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  /** `write` must be synchronous SQL; if any write of a batch throws, the batch rolls back and every caller sees the error. */
  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    let results: unknown[];
    try {
      results = this.storage.transactionSync(() => batch.map((item) => item.write()));
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => item.resolve(results[i]));
  }
}
