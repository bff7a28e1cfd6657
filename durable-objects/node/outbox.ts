import { type OutboxAction, WIRE_VERSION } from "../../protocol/agent-wire.ts";

export type { OutboxAction };

interface OutboxRow extends Record<string, SqlStorageValue> {
  id: string;
  kind: string;
  body: string;
  created_at: number;
}

export interface OutboxEntry {
  id: string;
  action: OutboxAction;
  createdAt: number;
}

/**
 * Actions for the agent, stored before they are sent and resent after every
 * reconnect until the agent acks their id (at-least-once; the agent dedups).
 */
export class Outbox {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** `replaceKind` drops queued actions of the same kind first: only the newest settings matter. */
  add(action: OutboxAction, options: { replaceKind?: boolean } = {}): OutboxEntry {
    if (options.replaceKind) this.sql.exec("DELETE FROM outbox WHERE kind = ?", action.kind);
    return this.store(newEntry(action));
  }

  /** Stores an entry made earlier (by `newEntry`), keeping its id: the agent may have seen that id already. */
  store(entry: OutboxEntry): OutboxEntry {
    this.sql.exec(
      "INSERT INTO outbox (id, kind, body, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      entry.id, entry.action.kind, JSON.stringify(entry.action), entry.createdAt,
    );
    return entry;
  }

  pending(): OutboxEntry[] {
    return this.sql
      .exec<OutboxRow>("SELECT * FROM outbox ORDER BY created_at, rowid")
      .toArray()
      .map((row) => ({ id: row.id, action: JSON.parse(row.body) as OutboxAction, createdAt: row.created_at }));
  }

  get(id: string): OutboxEntry | null {
    const row = this.sql.exec<OutboxRow>("SELECT * FROM outbox WHERE id = ?", id).toArray()[0];
    return row ? { id: row.id, action: JSON.parse(row.body) as OutboxAction, createdAt: row.created_at } : null;
  }

  /** Removes acked entries and returns them, so the caller can tell whoever waits for each. */
  ack(ids: readonly string[]): OutboxEntry[] {
    const removed: OutboxEntry[] = [];
    for (const id of ids) {
      const row = this.sql.exec<OutboxRow>("DELETE FROM outbox WHERE id = ? RETURNING *", id).toArray()[0];
      if (row) removed.push({ id: row.id, action: JSON.parse(row.body) as OutboxAction, createdAt: row.created_at });
    }
    return removed;
  }
}

/** An action with its id, not yet stored anywhere. */
export function newEntry(action: OutboxAction): OutboxEntry {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const now = Date.now();
  const id = `a-${now.toString(36)}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  return { id, action, createdAt: now };
}

export function actionFrame(entry: OutboxEntry): string {
  return JSON.stringify({ type: "action", v: WIRE_VERSION, id: entry.id, sentAt: new Date().toISOString(), action: entry.action });
}
