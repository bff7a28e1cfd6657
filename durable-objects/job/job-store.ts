import type { JsonObject } from "../../protocol/json.ts";
import type { JobCounts, JobEvent, JobEventType, JobRecord, JobReturn, JobStatus, JobTarget, TargetState } from "../../protocol/jobs.ts";

export const JOB_MIGRATIONS = [
  `CREATE TABLE job (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     jid TEXT NOT NULL,
     org TEXT NOT NULL,
     function TEXT NOT NULL,
     args TEXT NOT NULL,
     target TEXT NOT NULL,
     timeout INTEGER NOT NULL,
     test INTEGER NOT NULL,
     metadata TEXT NOT NULL,
     status TEXT NOT NULL,
     user TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     finished_at INTEGER,
     resend_done INTEGER NOT NULL DEFAULT 0,
     grace_done INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE targets (
     node_id TEXT PRIMARY KEY,
     state TEXT NOT NULL,
     online_at_dispatch INTEGER NOT NULL DEFAULT 0,
     dispatched_at INTEGER NOT NULL,
     acked_at INTEGER,
     resent INTEGER NOT NULL DEFAULT 0,
     returned_at INTEGER,
     ret TEXT,
     action_id TEXT
   );
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     type TEXT NOT NULL,
     node_id TEXT,
     data TEXT NOT NULL
   );`,
  // Whether any target is still open is asked once per return: the partial index answers without a scan.
  `CREATE INDEX targets_open ON targets (node_id) WHERE ret IS NULL;`,
] as const;

export interface JobRow extends Record<string, SqlStorageValue> {
  jid: string;
  org: string;
  function: string;
  args: string;
  target: string;
  timeout: number;
  test: number;
  metadata: string;
  status: string;
  user: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  resend_done: number;
  grace_done: number;
}

export interface TargetRow extends Record<string, SqlStorageValue> {
  node_id: string;
  state: string;
  online_at_dispatch: number;
  dispatched_at: number;
  acked_at: number | null;
  resent: number;
  returned_at: number | null;
  ret: string | null;
  action_id: string | null;
}

interface EventRow extends Record<string, SqlStorageValue> {
  seq: number;
  ts: number;
  type: string;
  node_id: string | null;
  data: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function parseReturn(row: TargetRow): JobReturn | null {
  return row.ret === null ? null : (JSON.parse(row.ret) as JobReturn);
}

export function toTarget(row: TargetRow): JobTarget {
  return {
    nodeId: row.node_id,
    state: row.state as TargetState,
    onlineAtDispatch: row.online_at_dispatch === 1,
    dispatchedAt: new Date(row.dispatched_at).toISOString(),
    ackedAt: iso(row.acked_at),
    resent: row.resent === 1,
    returnedAt: iso(row.returned_at),
    return: parseReturn(row),
  };
}

export function countsOf(targets: readonly TargetRow[]): JobCounts {
  const counts: JobCounts = { targets: targets.length, returned: 0, succeeded: 0, failed: 0, unreachable: 0 };
  for (const row of targets) {
    const ret = parseReturn(row);
    if (!ret) continue;
    counts.returned++;
    if (ret.synthetic) counts.unreachable++;
    else if (ret.success) counts.succeeded++;
    else counts.failed++;
  }
  return counts;
}

/** Returns do not rewrite the job row (one write fewer per target): the latest one counts as its update. */
function lastChange(job: JobRow, targets: readonly TargetRow[]): number {
  let latest = job.updated_at;
  for (const row of targets) if (row.returned_at !== null && row.returned_at > latest) latest = row.returned_at;
  return latest;
}

export function toRecord(job: JobRow, targets: readonly TargetRow[]): JobRecord {
  return {
    jid: job.jid,
    function: job.function,
    target: job.target,
    status: job.status as JobStatus,
    user: job.user,
    createdAt: new Date(job.created_at).toISOString(),
    updatedAt: new Date(lastChange(job, targets)).toISOString(),
    counts: countsOf(targets),
    args: JSON.parse(job.args) as JsonObject,
    timeout: job.timeout,
    test: job.test === 1,
    metadata: JSON.parse(job.metadata) as Record<string, string>,
    finishedAt: iso(job.finished_at),
    targets: targets.map(toTarget),
  };
}

export function toEvent(row: EventRow): JobEvent {
  return {
    seq: row.seq,
    ts: new Date(row.ts).toISOString(),
    type: row.type as JobEventType,
    nodeId: row.node_id,
    data: JSON.parse(row.data) as JsonObject,
  };
}

/** The job's append-only event log. */
export class EventLog {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  append(type: JobEventType, nodeId: string | null, data: JsonObject): JobEvent {
    const ts = Date.now();
    const seq = this.sql
      .exec<{ seq: number }>("INSERT INTO events (ts, type, node_id, data) VALUES (?, ?, ?, ?) RETURNING seq", ts, type, nodeId, JSON.stringify(data))
      .one().seq;
    return { seq, ts: new Date(ts).toISOString(), type, nodeId, data };
  }

  after(seq: number): JobEvent[] {
    return this.sql.exec<EventRow>("SELECT * FROM events WHERE seq > ? ORDER BY seq", seq).toArray().map(toEvent);
  }
}
