import type { AuditEntry, AuditRequestRecord } from "../../protocol/events.ts";

/** Appended to the org migrations: who made an API change, with which token, from where, and how it ended. */
export const AUDIT_REQUEST_MIGRATION = `ALTER TABLE audit_log ADD COLUMN token_id TEXT;
   ALTER TABLE audit_log ADD COLUMN token_name TEXT;
   ALTER TABLE audit_log ADD COLUMN ip TEXT;
   ALTER TABLE audit_log ADD COLUMN request_id TEXT;
   ALTER TABLE audit_log ADD COLUMN status INTEGER;`;

interface AuditRow extends Record<string, SqlStorageValue> {
  seq: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  detail: string;
  token_id: string | null;
  token_name: string | null;
  ip: string | null;
  request_id: string | null;
  status: number | null;
}

/** Older rows hold any JSON in `detail`; the API promises string values, so others are shown as JSON text. */
function stringDetails(detail: string): Record<string, string> {
  const parsed = JSON.parse(detail) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) out[key] = typeof value === "string" ? value : JSON.stringify(value);
  return out;
}

function toEntry(row: AuditRow): AuditEntry {
  return {
    id: row.seq,
    at: new Date(row.ts).toISOString(),
    actor: row.actor,
    tokenId: row.token_id,
    tokenName: row.token_name,
    action: row.action,
    target: row.target,
    details: stringDetails(row.detail),
    ip: row.ip,
    requestId: row.request_id,
    status: row.status,
  };
}

/**
 * Append-only record of who changed what in the org. API requests are recorded
 * once each by the API's audit middleware (`recordRequest`); `record` is for
 * changes that reach the org without an API token (a node enrolling or connecting).
 */
export class AuditLog {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  record(actor: string, action: string, target: string, detail: object = {}): void {
    this.sql.exec(
      "INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
      Date.now(),
      actor,
      action,
      target,
      JSON.stringify(detail),
    );
  }

  recordRequest(entry: AuditRequestRecord, now: number = Date.now()): void {
    this.sql.exec(
      `INSERT INTO audit_log (ts, actor, action, target, detail, token_id, token_name, ip, request_id, status)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      now, entry.actor, entry.action, entry.target, JSON.stringify(entry.details),
      entry.tokenId, entry.tokenName, entry.ip, entry.requestId, entry.status,
    );
  }

  /** Newest first. */
  list(sinceMs: number, limit: number): AuditEntry[] {
    return this.sql
      .exec<AuditRow>("SELECT * FROM audit_log WHERE ts >= ? ORDER BY seq DESC LIMIT ?", sinceMs, limit)
      .toArray()
      .map(toEntry);
  }
}
