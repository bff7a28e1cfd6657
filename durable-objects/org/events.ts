import type { JsonObject } from "../../protocol/json.ts";
import { EVENTS_KEEP_COUNT, EVENTS_KEEP_MS, type NewOrgEvent, type OrgEvent, type OrgEventType } from "../../protocol/events.ts";

/** Appended to the org migrations: AUTOINCREMENT so an id is never reused after pruning. */
export const EVENTS_MIGRATION = `CREATE TABLE events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     ts TEXT NOT NULL,
     type TEXT NOT NULL,
     data TEXT NOT NULL,
     recorded_at INTEGER NOT NULL
   );
   CREATE INDEX events_by_recorded_at ON events (recorded_at);`;

interface EventRow extends Record<string, SqlStorageValue> {
  id: number;
  ts: string;
  type: string;
  data: string;
}

function toEvent(row: EventRow): OrgEvent {
  return { id: row.id, ts: row.ts, type: row.type as OrgEventType, data: JSON.parse(row.data) as JsonObject };
}

export interface EventRetention {
  keepCount: number;
  keepMs: number;
}

/** The org's recent events, kept so a reconnecting subscriber can ask for everything after the last id it saw. */
export class EventStore {
  private readonly sql: SqlStorage;
  private readonly retention: EventRetention;

  constructor(sql: SqlStorage, retention: EventRetention = { keepCount: EVENTS_KEEP_COUNT, keepMs: EVENTS_KEEP_MS }) {
    this.sql = sql;
    this.retention = retention;
  }

  append(events: readonly NewOrgEvent[], now: number = Date.now()): OrgEvent[] {
    const stored = events.map((event) => {
      this.sql.exec("INSERT INTO events (ts, type, data, recorded_at) VALUES (?, ?, ?, ?)", event.ts, event.type, JSON.stringify(event.data), now);
      const id = this.sql.exec<{ id: number }>("SELECT last_insert_rowid() AS id").one().id;
      return { id, ts: event.ts, type: event.type, data: event.data };
    });
    if (stored.length > 0) this.prune(now);
    return stored;
  }

  after(id: number): OrgEvent[] {
    return this.sql.exec<EventRow>("SELECT id, ts, type, data FROM events WHERE id > ? ORDER BY id", id).toArray().map(toEvent);
  }

  /** The newest kept id, 0 when none is kept. */
  lastId(): number {
    return this.sql.exec<{ id: number | null }>("SELECT MAX(id) AS id FROM events").one().id ?? 0;
  }

  /** Both bounds use indexes (the primary key and recorded_at), so this is cheap enough to run on every append. */
  private prune(now: number): void {
    this.sql.exec("DELETE FROM events WHERE id <= ?", this.lastId() - this.retention.keepCount);
    this.sql.exec("DELETE FROM events WHERE recorded_at < ?", now - this.retention.keepMs);
  }
}
