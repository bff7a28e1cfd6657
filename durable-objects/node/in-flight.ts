import type { OutboxEntry } from "./outbox.ts";

/** Beyond this many unacked dispatches in memory, new ones go to the outbox as before. */
const MAX_IN_FLIGHT = 1000;
/** Remembered so that the job's re-send can tell "acked" from "forgotten by a restart". */
const MAX_RECENTLY_ACKED = 1000;

/**
 * Job dispatches sent to a connected agent and not yet acked, held in memory only.
 *
 * The `JobObject` stored the dispatch before sending it and re-sends once to every silent
 * target after 5 s, storing it in the outbox then; so an instance that dies with entries
 * here loses nothing the job cannot redo. What this saves is the outbox's two SQLite
 * writes per target of every job (insert on dispatch, delete on ack), which were half of
 * what a fan-out cost the node objects. Entries still here when the socket goes are
 * stored in the outbox, and reach the agent on its next connect like any other action.
 */
export class InFlightDispatches {
  private readonly entries = new Map<string, OutboxEntry>();
  private readonly recentlyAcked = new Set<string>();

  /** False when full: the caller stores the entry in the outbox instead. */
  add(entry: OutboxEntry): boolean {
    if (this.entries.size >= MAX_IN_FLIGHT) return false;
    this.entries.set(entry.id, entry);
    return true;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  take(id: string): OutboxEntry | undefined {
    const entry = this.entries.get(id);
    this.entries.delete(id);
    return entry;
  }

  /** Acks the ids held here; returns the others, which may be in the outbox. */
  ack(ids: readonly string[]): string[] {
    const elsewhere: string[] = [];
    for (const id of ids) {
      if (!this.entries.delete(id)) {
        elsewhere.push(id);
        continue;
      }
      this.recentlyAcked.add(id);
      if (this.recentlyAcked.size > MAX_RECENTLY_ACKED) this.recentlyAcked.delete(this.recentlyAcked.values().next().value as string);
    }
    return elsewhere;
  }

  wasAcked(id: string): boolean {
    return this.recentlyAcked.has(id);
  }

  /** Everything still unacked, oldest first, leaving this empty. */
  drain(): OutboxEntry[] {
    const all = [...this.entries.values()];
    this.entries.clear();
    return all;
  }

  get size(): number {
    return this.entries.size;
  }
}
