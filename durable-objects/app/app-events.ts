import type { JsonObject } from "../../protocol/json.ts";
import type { AppEvent, AppEventType } from "../../protocol/deployments.ts";

interface EventRow extends Record<string, SqlStorageValue> {
  seq: number;
  ts: number;
  type: string;
  deployment_id: string | null;
  task_id: string | null;
  data: string;
}

/** How many events an app keeps; older ones are pruned (the deploy progress stream only needs recent ones). */
const KEEP_EVENTS = 5_000;

function toEvent(row: EventRow): AppEvent {
  return {
    seq: row.seq,
    ts: new Date(row.ts).toISOString(),
    type: row.type as AppEventType,
    deploymentId: row.deployment_id,
    taskId: row.task_id,
    data: JSON.parse(row.data) as JsonObject,
  };
}

/** The app's append-only event log (deployment and task changes), read by `zectre deploy` to show progress. */
export class AppEventLog {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  append(type: AppEventType, deploymentId: string | null, taskId: string | null, data: JsonObject): AppEvent {
    const ts = Date.now();
    this.sql.exec("INSERT INTO events (ts, type, deployment_id, task_id, data) VALUES (?, ?, ?, ?, ?)", ts, type, deploymentId, taskId, JSON.stringify(data));
    const seq = this.sql.exec<{ seq: number }>("SELECT last_insert_rowid() AS seq").one().seq;
    if (seq % 500 === 0) this.sql.exec("DELETE FROM events WHERE seq <= ?", seq - KEEP_EVENTS);
    return { seq, ts: new Date(ts).toISOString(), type, deploymentId, taskId, data };
  }

  after(seq: number): AppEvent[] {
    return this.sql.exec<EventRow>("SELECT * FROM events WHERE seq > ? ORDER BY seq", seq).toArray().map(toEvent);
  }
}
