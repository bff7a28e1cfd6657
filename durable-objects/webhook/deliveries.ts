import type { DeliveryAttempt, DeliveryStatus, WebhookDeliveryRecord } from "../../protocol/webhooks.ts";
import type { AttemptRow, DeliveryRow } from "./schema.ts";

export interface NewDelivery {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  url: string;
  body: string;
  createdAt: number;
}

/** What one attempt found out, and what the delivery becomes. */
export interface AttemptResult {
  at: number;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  /** `pending` with `nextAttemptAt`, or a final status. */
  status: DeliveryStatus;
  nextAttemptAt: number | null;
}

/** The delivery queue and, the same rows, its records: a delivery stays after it finishes, until trimmed. */
export class DeliveryStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** Due at once: the alarm sends it. */
  enqueue(delivery: NewDelivery): void {
    this.sql.exec(
      `INSERT INTO deliveries (id, webhook_id, event_id, event_type, url, body, status, attempts, next_attempt_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
      delivery.id, delivery.webhookId, delivery.eventId, delivery.eventType, delivery.url, delivery.body,
      delivery.createdAt, delivery.createdAt,
    );
  }

  due(now: number, limit: number): DeliveryRow[] {
    return this.sql
      .exec<DeliveryRow>("SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?", now, limit)
      .toArray();
  }

  /** When the earliest pending delivery is due, or null when none is pending. */
  nextDueAt(): number | null {
    const row = this.sql.exec<{ at: number | null }>("SELECT MIN(next_attempt_at) AS at FROM deliveries WHERE status = 'pending'").one();
    return row.at;
  }

  /**
   * Takes a due delivery for one attempt by moving its due time to `leaseUntil`. Fails when
   * another run took it first; if this run dies mid-send, the delivery is due again after the lease.
   */
  claim(row: DeliveryRow, leaseUntil: number): boolean {
    const claimed = this.sql.exec(
      "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND attempts = ? AND next_attempt_at = ? RETURNING id",
      leaseUntil, row.id, row.attempts, row.next_attempt_at,
    );
    return claimed.toArray().length === 1;
  }

  /**
   * Records attempt `attempts + 1` of a delivery. The version check (`attempts` as read
   * before sending) makes a repeated alarm, or one that overlapped a removal, record
   * nothing twice: only the first writer of an attempt number wins, and a delivery that
   * was canceled meanwhile keeps its status but still gets its attempt on record.
   */
  recordAttempt(row: DeliveryRow, result: AttemptResult): boolean {
    const n = row.attempts + 1;
    // RETURNING, because a cursor only counts the rows it has been read for.
    const updated = this.sql.exec(
      `UPDATE deliveries SET attempts = ?, status = CASE WHEN status = 'pending' THEN ? ELSE status END,
         next_attempt_at = CASE WHEN status = 'pending' THEN ? ELSE NULL END
       WHERE id = ? AND attempts = ? RETURNING id`,
      n, result.status, result.nextAttemptAt, row.id, row.attempts,
    );
    if (updated.toArray().length === 0) return false;
    this.sql.exec(
      "INSERT OR REPLACE INTO attempts (delivery_id, n, at, duration_ms, status_code, error) VALUES (?, ?, ?, ?, ?, ?)",
      row.id, n, result.at, result.durationMs, result.statusCode, result.error,
    );
    return true;
  }

  /** A removed webhook's pending deliveries: nothing can sign them any more. */
  cancelPending(webhookId: string): void {
    this.sql.exec("UPDATE deliveries SET status = 'canceled', next_attempt_at = NULL WHERE webhook_id = ? AND status = 'pending'", webhookId);
  }

  /** Drops all but the newest `keep` deliveries, with their attempts. */
  trim(keep: number): void {
    const cutoff = this.sql.exec<{ seq: number }>("SELECT seq FROM deliveries ORDER BY seq DESC LIMIT 1 OFFSET ?", keep).toArray()[0];
    if (!cutoff) return;
    this.sql.exec("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE seq <= ?)", cutoff.seq);
    this.sql.exec("DELETE FROM deliveries WHERE seq <= ?", cutoff.seq);
  }

  get(id: string): WebhookDeliveryRecord | null {
    const row = this.sql.exec<DeliveryRow>("SELECT * FROM deliveries WHERE id = ?", id).toArray()[0];
    return row ? this.toRecord(row) : null;
  }

  /** Newest first, of one webhook or of all. */
  list(limit: number, webhookId?: string): WebhookDeliveryRecord[] {
    const rows = webhookId === undefined
      ? this.sql.exec<DeliveryRow>("SELECT * FROM deliveries ORDER BY seq DESC LIMIT ?", limit).toArray()
      : this.sql.exec<DeliveryRow>("SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?", webhookId, limit).toArray();
    return rows.map((row) => this.toRecord(row));
  }

  count(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries").one().n;
  }

  private toRecord(row: DeliveryRow): WebhookDeliveryRecord {
    const attempts = this.sql.exec<AttemptRow>("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY n", row.id).toArray();
    return {
      id: row.id,
      webhookId: row.webhook_id,
      eventId: row.event_id,
      event: row.event_type,
      url: row.url,
      status: row.status as DeliveryStatus,
      createdAt: new Date(row.created_at).toISOString(),
      nextAttemptAt: row.next_attempt_at === null ? null : new Date(row.next_attempt_at).toISOString(),
      attempts: attempts.map(toAttempt),
    };
  }
}

function toAttempt(row: AttemptRow): DeliveryAttempt {
  return { n: row.n, at: new Date(row.at).toISOString(), durationMs: row.duration_ms, statusCode: row.status_code, error: row.error };
}
