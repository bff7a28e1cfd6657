/**
 * Forward-only schema migrations for a Durable Object's SQLite database.
 * Runs synchronously in the constructor: SQL calls are synchronous, so no request
 * can interleave before the schema is current.
 */
export function applyMigrations(sql: SqlStorage, migrations: readonly string[]): void {
  sql.exec("CREATE TABLE IF NOT EXISTS _schema (version INTEGER NOT NULL)");
  const row = sql.exec<{ version: number }>("SELECT version FROM _schema").toArray()[0];
  const current = row?.version ?? 0;
  if (current >= migrations.length) return;
  for (let version = current; version < migrations.length; version++) {
    sql.exec(migrations[version] as string);
  }
  if (row) sql.exec("UPDATE _schema SET version = ?", migrations.length);
  else sql.exec("INSERT INTO _schema (version) VALUES (?)", migrations.length);
}
