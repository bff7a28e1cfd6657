import type { JobSummary } from "../../protocol/jobs.ts";

interface JobIndexRow extends Record<string, SqlStorageValue> {
  summary: string;
}

/** The org's index of its jobs, for `job list` and `job active`; each JobObject keeps it current. */
export class JobIndex {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** A finished job's summary is never replaced by an active one: a retried or delayed update may arrive late. */
  upsert(summary: JobSummary): void {
    const active = summary.status === "claimed" || summary.status === "running" ? 1 : 0;
    this.sql.exec(
      `INSERT INTO jobs (jid, created_at, active, summary) VALUES (?, ?, ?, ?)
       ON CONFLICT (jid) DO UPDATE SET active = excluded.active, summary = excluded.summary
       WHERE jobs.active = 1 OR excluded.active = 0`,
      summary.jid,
      Date.parse(summary.createdAt),
      active,
      JSON.stringify(summary),
    );
  }

  /** The job's indexed status, or null when it is not in the index. */
  status(jid: string): string | null {
    return this.sql.exec<{ status: string }>("SELECT json_extract(summary, '$.status') AS status FROM jobs WHERE jid = ?", jid).toArray()[0]?.status ?? null;
  }

  recent(limit: number): JobSummary[] {
    return this.rows("SELECT summary FROM jobs ORDER BY jid DESC LIMIT ?", limit);
  }

  active(): JobSummary[] {
    return this.rows("SELECT summary FROM jobs WHERE active = 1 ORDER BY jid DESC");
  }

  /** Jobs past retention leave the index (their objects delete themselves). */
  prune(olderThan: number): void {
    this.sql.exec("DELETE FROM jobs WHERE created_at < ? AND active = 0", olderThan);
  }

  private rows(query: string, ...bindings: SqlStorageValue[]): JobSummary[] {
    return this.sql.exec<JobIndexRow>(query, ...bindings).toArray().map((r) => JSON.parse(r.summary) as JobSummary);
  }
}
