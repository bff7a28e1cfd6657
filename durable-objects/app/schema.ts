/** The app object's tables. Deployments are immutable except for `replicas` (scale) and the derived `status`. */
export const APP_MIGRATIONS = [
  `CREATE TABLE app (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     org TEXT NOT NULL,
     name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     promoted TEXT,
     promoting TEXT
   );
   CREATE TABLE deployments (
     id TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     spec TEXT NOT NULL,
     replicas INTEGER NOT NULL,
     status TEXT NOT NULL
   );
   CREATE TABLE promotions (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     deployment_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     by TEXT NOT NULL
   );
   CREATE TABLE tasks (
     task_id TEXT PRIMARY KEY,
     deployment_id TEXT NOT NULL,
     node_id TEXT NOT NULL,
     state TEXT NOT NULL,
     desired TEXT NOT NULL,
     host_port INTEGER,
     restarts INTEGER NOT NULL DEFAULT 0,
     message TEXT,
     assigned_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE INDEX tasks_by_deployment ON tasks (deployment_id);
   CREATE TABLE env (
     name TEXT PRIMARY KEY,
     secret INTEGER NOT NULL,
     value TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     updated_by TEXT NOT NULL
   );
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     type TEXT NOT NULL,
     deployment_id TEXT,
     task_id TEXT,
     data TEXT NOT NULL
   );
   CREATE TABLE logs (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     node_id TEXT NOT NULL,
     task_id TEXT NOT NULL,
     deployment_id TEXT NOT NULL,
     stream TEXT NOT NULL,
     line TEXT NOT NULL
   );
   CREATE INDEX logs_by_deployment ON logs (deployment_id, seq);`,
  // Scale to zero: when each deployment last served a request (or became healthy, or woke), and since when it is idle.
  `CREATE TABLE deployment_activity (
     deployment_id TEXT PRIMARY KEY,
     active_at INTEGER NOT NULL,
     idle_since INTEGER
   );`,
] as const;
