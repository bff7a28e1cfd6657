import type { StatesUpdate, StateTreeInfo } from "../../protocol/states.ts";

interface StateTreeRow extends Record<string, SqlStorageValue> {
  version: string;
  files: string;
  bytes: number;
  updated_at: number;
  updated_by: string;
}

/** The org's current state tree; only the newest is kept, as agents only ever need the newest. */
export class StateTreeStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  store(version: string, files: Record<string, string>, actor: string): StateTreeInfo {
    const bytes = Object.values(files).reduce((n, text) => n + new TextEncoder().encode(text).byteLength, 0);
    this.sql.exec(
      `INSERT INTO state_tree (id, version, files, bytes, updated_at, updated_by) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET version = excluded.version, files = excluded.files, bytes = excluded.bytes,
         updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      version,
      JSON.stringify(files),
      bytes,
      Date.now(),
      actor,
    );
    return this.info() as StateTreeInfo;
  }

  info(): StateTreeInfo | null {
    const row = this.row();
    if (!row) return null;
    const files = Object.keys(JSON.parse(row.files) as Record<string, string>).sort();
    return { version: row.version, files, bytes: row.bytes, updatedAt: new Date(row.updated_at).toISOString(), updatedBy: row.updated_by };
  }

  update(): StatesUpdate | null {
    const row = this.row();
    return row ? { kind: "states.update", version: row.version, files: JSON.parse(row.files) as Record<string, string> } : null;
  }

  private row(): StateTreeRow | undefined {
    return this.sql.exec<StateTreeRow>("SELECT * FROM state_tree").toArray()[0];
  }
}
