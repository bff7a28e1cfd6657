import { APPS_INDEX_MIGRATION } from "./apps-index.ts";
import { AUDIT_REQUEST_MIGRATION } from "./audit.ts";
import { EVENTS_MIGRATION } from "./events.ts";
import { DIRECT_NODES_MIGRATION } from "./node-directory.ts";
import { METRICS_MIGRATION } from "./metrics-store.ts";

/** OrgObject schema, forward-only: append, never edit a shipped entry. */
export const MIGRATIONS = [
  `CREATE TABLE org (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     rate_limit_per_minute INTEGER NOT NULL
   );
   CREATE TABLE api_tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     scope TEXT NOT NULL,
     secret_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     expires_at INTEGER,
     last_used_at INTEGER,
     revoked_at INTEGER
   );
   CREATE TABLE audit_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT NOT NULL,
     detail TEXT NOT NULL
   );`,
  `CREATE TABLE enrollment_tokens (
     id TEXT PRIMARY KEY,
     secret_hash TEXT NOT NULL,
     uses INTEGER NOT NULL,
     used INTEGER NOT NULL,
     auto_approve INTEGER NOT NULL,
     labels TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER
   );
   CREATE TABLE nodes (
     id TEXT PRIMARY KEY,
     public_key TEXT NOT NULL,
     state TEXT NOT NULL,
     state_reason TEXT,
     state_changed_at INTEGER NOT NULL,
     labels TEXT NOT NULL,
     facts TEXT,
     online INTEGER NOT NULL DEFAULT 0,
     last_seen INTEGER,
     enrolled_at INTEGER NOT NULL,
     enrollment_token TEXT NOT NULL
   );
   CREATE INDEX nodes_by_state ON nodes (state);
   CREATE TABLE settings (
     scope TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     updated_by TEXT NOT NULL,
     PRIMARY KEY (scope, key)
   );`,
  `CREATE TABLE jobs (
     jid TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     active INTEGER NOT NULL,
     summary TEXT NOT NULL
   );
   CREATE INDEX jobs_active ON jobs (active, jid);`,
  `CREATE TABLE state_tree (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     version TEXT NOT NULL,
     files TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     updated_by TEXT NOT NULL
   );`,
  APPS_INDEX_MIGRATION,
  EVENTS_MIGRATION,
  AUDIT_REQUEST_MIGRATION,
  METRICS_MIGRATION,
  DIRECT_NODES_MIGRATION,
] as const;
