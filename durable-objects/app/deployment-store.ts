import type { CreateDeploymentBody, DeploymentRecord, DeploymentStatus, TaskRecord } from "../../protocol/deployments.ts";

export interface DeploymentRow extends Record<string, SqlStorageValue> {
  id: string;
  created_at: number;
  created_by: string;
  spec: string;
  replicas: number;
  status: string;
}

export type DeploymentSpec = DeploymentRecord["spec"];

/** Immutable deployments: only `replicas` (scale) and the derived `status` ever change. */
export class DeploymentStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  insert(id: string, body: CreateDeploymentBody, by: string, now: number): void {
    const { replicas, promote: _promote, ...spec } = body;
    this.sql.exec(
      "INSERT INTO deployments (id, created_at, created_by, spec, replicas, status) VALUES (?, ?, ?, ?, ?, 'pending')",
      id, now, by, JSON.stringify(spec satisfies DeploymentSpec), replicas,
    );
  }

  get(id: string): DeploymentRow | null {
    return this.sql.exec<DeploymentRow>("SELECT * FROM deployments WHERE id = ?", id).toArray()[0] ?? null;
  }

  /** Newest first. */
  list(limit: number): DeploymentRow[] {
    return this.sql.exec<DeploymentRow>("SELECT * FROM deployments ORDER BY id DESC LIMIT ?", limit).toArray();
  }

  latest(): DeploymentRow | null {
    return this.list(1)[0] ?? null;
  }

  setReplicas(id: string, replicas: number): void {
    this.sql.exec("UPDATE deployments SET replicas = ? WHERE id = ?", replicas, id);
  }

  /** True when the status changed. */
  setStatus(id: string, status: DeploymentStatus): boolean {
    return this.sql.exec("UPDATE deployments SET status = ? WHERE id = ? AND status != ?", status, id, status).rowsWritten > 0;
  }
}

export function specOf(row: DeploymentRow): DeploymentSpec {
  return JSON.parse(row.spec) as DeploymentSpec;
}

export function toDeploymentRecord(row: DeploymentRow, app: string, promoted: string | null, tasks: TaskRecord[]): DeploymentRecord {
  return {
    id: row.id,
    app,
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
    status: row.status as DeploymentStatus,
    promoted: row.id === promoted,
    replicas: row.replicas,
    spec: specOf(row),
    tasks,
  };
}
