/** The WebhookObject's tables: subscriptions, deliveries (the queue and its records) and their attempts. */
export const WEBHOOK_MIGRATIONS = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE hooks (
     id TEXT PRIMARY KEY,
     url TEXT NOT NULL,
     events TEXT NOT NULL,
     secret_sealed TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     enabled INTEGER NOT NULL DEFAULT 1
   );
   CREATE TABLE deliveries (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     webhook_id TEXT NOT NULL,
     event_id TEXT NOT NULL,
     event_type TEXT NOT NULL,
     url TEXT NOT NULL,
     body TEXT NOT NULL,
     status TEXT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
   CREATE INDEX deliveries_by_hook ON deliveries (webhook_id, seq);
   CREATE TABLE attempts (
     delivery_id TEXT NOT NULL,
     n INTEGER NOT NULL,
     at INTEGER NOT NULL,
     duration_ms INTEGER NOT NULL,
     status_code INTEGER,
     error TEXT,
     PRIMARY KEY (delivery_id, n)
   );`,
] as const;

export interface HookRow extends Record<string, SqlStorageValue> {
  id: string;
  url: string;
  events: string;
  secret_sealed: string;
  created_at: number;
  created_by: string;
  enabled: number;
}

export interface DeliveryRow extends Record<string, SqlStorageValue> {
  seq: number;
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  url: string;
  body: string;
  status: string;
  attempts: number;
  next_attempt_at: number | null;
  created_at: number;
}

export interface AttemptRow extends Record<string, SqlStorageValue> {
  delivery_id: string;
  n: number;
  at: number;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
}
