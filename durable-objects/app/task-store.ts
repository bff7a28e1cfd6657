import type { TaskRecord, TaskState } from "../../protocol/deployments.ts";
import { LIVE_TASK_STATES } from "./status.ts";

export interface TaskRow extends Record<string, SqlStorageValue> {
  task_id: string;
  deployment_id: string;
  node_id: string;
  state: string;
  desired: string;
  host_port: number | null;
  restarts: number;
  message: string | null;
  assigned_at: number;
  updated_at: number;
}

export interface TaskUpdate {
  state: TaskState;
  hostPort: number | null;
  restarts: number;
  message: string | null;
}

/** Stopped tasks are kept this long for `deployments` output, then pruned. */
const KEEP_STOPPED_MS = 24 * 3600 * 1000;

/** Placements and the last reported state of every task of the app. */
export class TaskStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  insert(taskId: string, deploymentId: string, nodeId: string, now: number): void {
    this.sql.exec(
      "INSERT INTO tasks (task_id, deployment_id, node_id, state, desired, assigned_at, updated_at) VALUES (?, ?, ?, 'assigned', 'run', ?, ?)",
      taskId, deploymentId, nodeId, now, now,
    );
  }

  get(taskId: string): TaskRow | null {
    return this.sql.exec<TaskRow>("SELECT * FROM tasks WHERE task_id = ?", taskId).toArray()[0] ?? null;
  }

  ofDeployment(deploymentId: string): TaskRow[] {
    return this.sql.exec<TaskRow>("SELECT * FROM tasks WHERE deployment_id = ? ORDER BY task_id", deploymentId).toArray();
  }

  /** Tasks that should be running (desired run, not lost or stopped). */
  wanted(deploymentId?: string): TaskRow[] {
    const rows = deploymentId === undefined
      ? this.sql.exec<TaskRow>("SELECT * FROM tasks WHERE desired = 'run' ORDER BY task_id").toArray()
      : this.sql.exec<TaskRow>("SELECT * FROM tasks WHERE desired = 'run' AND deployment_id = ? ORDER BY task_id", deploymentId).toArray();
    return rows.filter((t) => LIVE_TASK_STATES.includes(t.state as TaskState));
  }

  onNode(nodeId: string): TaskRow[] {
    return this.sql.exec<TaskRow>("SELECT * FROM tasks WHERE node_id = ? AND state NOT IN ('stopped', 'lost')", nodeId).toArray();
  }

  update(taskId: string, update: TaskUpdate, now: number): void {
    this.sql.exec(
      "UPDATE tasks SET state = ?, host_port = ?, restarts = ?, message = ?, updated_at = ? WHERE task_id = ?",
      update.state, update.hostPort, update.restarts, update.message, now, taskId,
    );
  }

  /** A task the control plane gives up on: desired stop; `state` is `stopping` (agent told) or `lost` (node gone). */
  release(taskId: string, state: "stopping" | "lost", message: string | null, now: number): void {
    this.sql.exec("UPDATE tasks SET desired = 'stop', state = ?, message = COALESCE(?, message), updated_at = ? WHERE task_id = ?", state, message, now, taskId);
  }

  prune(now: number): void {
    this.sql.exec("DELETE FROM tasks WHERE state IN ('stopped', 'lost') AND updated_at < ?", now - KEEP_STOPPED_MS);
  }
}

export function toTaskRecord(row: TaskRow): TaskRecord {
  return {
    taskId: row.task_id,
    deploymentId: row.deployment_id,
    nodeId: row.node_id,
    state: row.state as TaskState,
    desired: row.desired as "run" | "stop",
    hostPort: row.host_port,
    restarts: row.restarts,
    message: row.message,
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}
