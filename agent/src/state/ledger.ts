import { z } from "zod";
import { JsonlFile } from "./files.ts";

/**
 * A durable "have I done this already?" record, keyed by an id with an epoch.
 * `ledger.jsonl` is the job-dedup ledger of the design's at-least-once rule (the
 * agent records `jid → epoch` before executing and drops repeats); `actions.jsonl`
 * uses the same class, with epoch 0, for the ids of applied control-plane actions.
 */

const LedgerLine = z.object({ id: z.string(), epoch: z.number().int().min(0), at: z.string() });

export interface LedgerOptions {
  /** How many ids are remembered; older ones are dropped when the file is compacted. */
  readonly maxEntries?: number;
}

export const DEFAULT_LEDGER_ENTRIES = 10_000;

export class DedupLedger {
  readonly path: string;
  readonly maxEntries: number;
  readonly #file: JsonlFile;
  /** id → highest epoch recorded; insertion order is recency, so the oldest come first. */
  readonly #entries = new Map<string, { epoch: number; at: string }>();
  #lines = 0;

  private constructor(path: string, maxEntries: number) {
    this.path = path;
    this.maxEntries = maxEntries;
    this.#file = new JsonlFile(path);
  }

  /** Loads the file; a torn last line (a crash mid-append) or a garbled line is skipped, never fatal. */
  static open(path: string, options: LedgerOptions = {}): DedupLedger {
    const ledger = new DedupLedger(path, Math.max(1, options.maxEntries ?? DEFAULT_LEDGER_ENTRIES));
    const contents = ledger.#file.load();
    for (const record of contents.records) {
      const line = LedgerLine.safeParse(record);
      if (line.success) ledger.#remember(line.data.id, line.data.epoch, line.data.at);
    }
    ledger.#lines = contents.records.length + contents.skipped;
    if (contents.skipped > 0 || ledger.#lines > 2 * ledger.maxEntries) ledger.#compact();
    return ledger;
  }

  /**
   * True when `id` was recorded with this epoch or a later one: the dispatch is
   * a repeat (or a stale resend) and must not run again. A higher epoch is a
   * deliberate re-dispatch and is not seen.
   */
  seen(id: string, epoch: number): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && entry.epoch >= epoch;
  }

  /** Durable (appended and fsynced) before it returns: call it before executing. */
  record(id: string, epoch: number, now: Date = new Date()): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be a non-negative integer, got ${epoch}`);
    if (this.seen(id, epoch)) return;
    const at = now.toISOString();
    this.#file.append({ id, epoch, at });
    this.#lines++;
    this.#remember(id, epoch, at);
    if (this.#lines > 2 * this.maxEntries) this.#compact();
  }

  get size(): number {
    return this.#entries.size;
  }

  close(): void {
    this.#file.close();
  }

  #remember(id: string, epoch: number, at: string): void {
    const previous = this.#entries.get(id);
    this.#entries.delete(id);
    this.#entries.set(id, previous !== undefined && previous.epoch > epoch ? previous : { epoch, at });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }

  /** Rewrites the file with one line per remembered id, atomically, so it never grows without bound. */
  #compact(): void {
    const records = [...this.#entries].map(([id, entry]) => ({ id, epoch: entry.epoch, at: entry.at }));
    this.#file.rewrite(records);
    this.#lines = records.length;
  }
}
