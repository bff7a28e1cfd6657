import type { JsonObject, JsonValue } from "../../protocol/json.ts";
import { type Labels, parseSettingScopeText, type SettingRecord, type SettingScope, settingScopeText } from "../../protocol/nodes.ts";

interface SettingRow extends Record<string, SqlStorageValue> {
  scope: string;
  key: string;
  value: string;
  updated_at: number;
  updated_by: string;
}

function toRecord(row: SettingRow): SettingRecord {
  return {
    scope: parseSettingScopeText(row.scope) ?? { kind: "org" },
    key: row.key,
    value: JSON.parse(row.value) as JsonValue,
    updatedAt: new Date(row.updated_at).toISOString(),
    updatedBy: row.updated_by,
  };
}

export interface MergedSettings {
  settings: JsonObject;
  sources: Record<string, string>;
}

/** Key/value settings per org, per label and per node; a node sees them merged node > label > org. */
export class SettingsStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  put(scope: SettingScope, key: string, value: JsonValue, actor: string): SettingRecord {
    this.sql.exec(
      `INSERT INTO settings (scope, key, value, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      settingScopeText(scope),
      key,
      JSON.stringify(value),
      Date.now(),
      actor,
    );
    return this.get(scope, key) as SettingRecord;
  }

  get(scope: SettingScope, key: string): SettingRecord | null {
    const row = this.sql
      .exec<SettingRow>("SELECT * FROM settings WHERE scope = ? AND key = ?", settingScopeText(scope), key)
      .toArray()[0];
    return row ? toRecord(row) : null;
  }

  delete(scope: SettingScope, key: string): void {
    this.sql.exec("DELETE FROM settings WHERE scope = ? AND key = ?", settingScopeText(scope), key);
  }

  list(scope: SettingScope | null): SettingRecord[] {
    const rows =
      scope === null
        ? this.sql.exec<SettingRow>("SELECT * FROM settings ORDER BY scope, key")
        : this.sql.exec<SettingRow>("SELECT * FROM settings WHERE scope = ? ORDER BY key", settingScopeText(scope));
    return rows.toArray().map(toRecord);
  }

  /** Label scopes apply in label-key order, so the merge is the same every time. */
  mergedFor(nodeId: string, labels: Labels): MergedSettings {
    const layers = ["org", ...Object.keys(labels).sort().map((k) => `label:${k}=${labels[k]}`), `node:${nodeId}`];
    const merged: MergedSettings = { settings: {}, sources: {} };
    for (const layer of layers) {
      for (const row of this.sql.exec<SettingRow>("SELECT * FROM settings WHERE scope = ? ORDER BY key", layer)) {
        merged.settings[row.key] = JSON.parse(row.value) as JsonValue;
        merged.sources[row.key] = layer;
      }
    }
    return merged;
  }
}
