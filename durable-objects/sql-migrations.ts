/**
 * Forward-only schema migrations for a Durable Object's SQLite database.
 * Runs synchronously in the constructor: SQL calls are synchronous, so no request
 * can interleave before the schema is current.
 */
export function applyMigrations(sql: SqlStorage, migrations: readonly string[]): void {
  const current = schemaVersion(sql);
  if (current !== null && current >= migrations.length) return;
  if (current === null) sql.exec("CREATE TABLE _schema (version INTEGER NOT NULL)");
  for (let version = current ?? 0; version < migrations.length; version++) {
    sql.exec(migrations[version] as string);
  }
  if (current !== null) sql.exec("UPDATE _schema SET version = ?", migrations.length);
  else sql.exec("INSERT INTO _schema (version) VALUES (?)", migrations.length);
}

/**
 * The stored version, or null for a new database. Only a read: this runs on every wake
 * of every object, and a `CREATE TABLE IF NOT EXISTS` there would open a write transaction each time.
 */
function schemaVersion(sql: SqlStorage): number | null {
  let rows: { version: number }[];
  try {
    rows = sql.exec<{ version: number }>("SELECT version FROM _schema").toArray();
  } catch (error) {
    if (error instanceof Error && /no such table/i.test(error.message)) return null;
    throw error;
  }
  return rows[0]?.version ?? 0;
}
