import type { LogLine, StoredLogLine } from "../../protocol/deployments.ts";

interface LogRow extends Record<string, SqlStorageValue> {
  seq: number;
  ts: number;
  node_id: string;
  task_id: string;
  deployment_id: string;
  stream: string;
  line: string;
}

/** Lines kept per app; the oldest go first. Logs are for looking at recent behaviour, not an archive. */
export const KEEP_LOG_LINES = 50_000;

export interface LogQuery {
  deploymentId?: string | undefined;
  sinceMs?: number | undefined;
  afterSeq?: number | undefined;
  limit: number;
}

export function toLogLine(row: LogRow, app: string): StoredLogLine {
  return {
    seq: row.seq,
    nodeId: row.node_id,
    taskId: row.task_id,
    app,
    deploymentId: row.deployment_id,
    stream: row.stream as "stdout" | "stderr",
    ts: new Date(row.ts).toISOString(),
    line: row.line,
  };
}

/** Task output lines shipped by agents, newest last. */
export class LogStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  append(nodeId: string, lines: readonly LogLine[]): number[] {
    const seqs: number[] = [];
    for (const line of lines) {
      const ts = Date.parse(line.ts);
      this.sql.exec(
        "INSERT INTO logs (ts, node_id, task_id, deployment_id, stream, line) VALUES (?, ?, ?, ?, ?, ?)",
        Number.isFinite(ts) ? ts : Date.now(), nodeId, line.taskId, line.deploymentId, line.stream, line.line,
      );
      seqs.push(this.sql.exec<{ seq: number }>("SELECT last_insert_rowid() AS seq").one().seq);
    }
    const last = seqs.at(-1);
    if (last !== undefined) this.sql.exec("DELETE FROM logs WHERE seq <= ?", last - KEEP_LOG_LINES);
    return seqs;
  }

  /** The newest `limit` lines matching, in order. */
  query(app: string, q: LogQuery): StoredLogLine[] {
    const rows = this.sql
      .exec<LogRow>(
        `SELECT * FROM logs WHERE (? IS NULL OR deployment_id = ?) AND ts >= ? AND seq > ? ORDER BY seq DESC LIMIT ?`,
        q.deploymentId ?? null, q.deploymentId ?? null, q.sinceMs ?? 0, q.afterSeq ?? 0, q.limit,
      )
      .toArray();
    return rows.reverse().map((row) => toLogLine(row, app));
  }
}
