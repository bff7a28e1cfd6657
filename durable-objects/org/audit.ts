/** Append-only record of who changed what in the org. */
export class AuditLog {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  record(actor: string, action: string, target: string, detail: object = {}): void {
    this.sql.exec(
      "INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
      Date.now(),
      actor,
      action,
      target,
      JSON.stringify(detail),
    );
  }
}
