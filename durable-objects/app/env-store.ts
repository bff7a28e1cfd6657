import type { SecretBox } from "./secret-box.ts";

export interface EnvEntry {
  name: string;
  secret: boolean;
  /** Null for a secret unless revealed. */
  value: string | null;
  updatedAt: string;
  updatedBy: string;
}

interface EnvRow extends Record<string, SqlStorageValue> {
  name: string;
  secret: number;
  value: string;
  updated_at: number;
  updated_by: string;
}

/** The app's variables; secret values are stored sealed and only opened to start a task or for `--reveal`. */
export class EnvStore {
  private readonly sql: SqlStorage;
  private readonly box: SecretBox | null;
  private readonly context: (name: string) => string;

  constructor(sql: SqlStorage, box: SecretBox | null, context: (name: string) => string) {
    this.sql = sql;
    this.box = box;
    this.context = context;
  }

  get canStoreSecrets(): boolean {
    return this.box !== null;
  }

  async set(name: string, value: string, secret: boolean, by: string): Promise<void> {
    const stored = secret ? await (this.box as SecretBox).seal(value, this.context(name)) : value;
    this.sql.exec(
      `INSERT INTO env (name, secret, value, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET secret = excluded.secret, value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      name, secret ? 1 : 0, stored, Date.now(), by,
    );
  }

  unset(name: string): boolean {
    return this.sql.exec("DELETE FROM env WHERE name = ?", name).rowsWritten > 0;
  }

  async list(reveal: boolean): Promise<EnvEntry[]> {
    const rows = this.sql.exec<EnvRow>("SELECT * FROM env ORDER BY name").toArray();
    return Promise.all(
      rows.map(async (row) => ({
        name: row.name,
        secret: row.secret === 1,
        value: row.secret === 1 ? (reveal ? await this.open(row) : null) : row.value,
        updatedAt: new Date(row.updated_at).toISOString(),
        updatedBy: row.updated_by,
      })),
    );
  }

  /** Every variable in clear, for a task's environment. */
  async resolved(): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const entry of await this.list(true)) env[entry.name] = entry.value ?? "";
    return env;
  }

  private async open(row: EnvRow): Promise<string> {
    if (!this.box) throw new Error("SECRETS_KEY is not set: stored secrets cannot be read");
    return this.box.open(row.value, this.context(row.name));
  }
}
