/** The org's apps, which app each deployment belongs to, and the resources each placed task reserves per node. */
export const APPS_INDEX_MIGRATION = `CREATE TABLE apps (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
   CREATE TABLE deployment_apps (deployment_id TEXT PRIMARY KEY, app TEXT NOT NULL);
   CREATE TABLE task_load (
     task_id TEXT PRIMARY KEY,
     node_id TEXT NOT NULL,
     app TEXT NOT NULL,
     cpu REAL NOT NULL,
     memory_mb INTEGER NOT NULL
   );
   CREATE INDEX task_load_by_node ON task_load (node_id);`;

export interface NodeLoad {
  nodeId: string;
  tasks: number;
  cpu: number;
  memoryMb: number;
}

export interface TrackedTask {
  taskId: string;
  nodeId: string;
  cpu: number;
  memoryMb: number;
}

export class AppsIndex {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  addApp(name: string, now: number): void {
    this.sql.exec("INSERT INTO apps (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", name, now);
  }

  apps(): string[] {
    return this.sql.exec<{ name: string }>("SELECT name FROM apps ORDER BY name").toArray().map((r) => r.name);
  }

  addDeployment(deploymentId: string, app: string): void {
    this.sql.exec("INSERT INTO deployment_apps (deployment_id, app) VALUES (?, ?) ON CONFLICT (deployment_id) DO NOTHING", deploymentId, app);
  }

  appOf(deploymentId: string): string | null {
    return this.sql.exec<{ app: string }>("SELECT app FROM deployment_apps WHERE deployment_id = ?", deploymentId).toArray()[0]?.app ?? null;
  }

  track(app: string, tasks: readonly TrackedTask[]): void {
    for (const t of tasks) {
      this.sql.exec(
        "INSERT INTO task_load (task_id, node_id, app, cpu, memory_mb) VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
        t.taskId, t.nodeId, app, t.cpu, t.memoryMb,
      );
    }
  }

  untrack(taskIds: readonly string[]): void {
    for (const id of taskIds) this.sql.exec("DELETE FROM task_load WHERE task_id = ?", id);
  }

  load(): NodeLoad[] {
    return this.sql
      .exec<{ node_id: string; tasks: number; cpu: number; memory_mb: number }>(
        "SELECT node_id, COUNT(*) AS tasks, SUM(cpu) AS cpu, SUM(memory_mb) AS memory_mb FROM task_load GROUP BY node_id",
      )
      .toArray()
      .map((r) => ({ nodeId: r.node_id, tasks: r.tasks, cpu: r.cpu, memoryMb: r.memory_mb }));
  }
}
