import type { WebhookRecord } from "../../protocol/webhooks.ts";
import type { HookRow } from "./schema.ts";

export interface NewHook {
  id: string;
  url: string;
  events: readonly string[];
  secretSealed: string;
  createdBy: string;
  createdAt: number;
}

/** The org's subscriptions. The sealed secret stays in here: records never carry it. */
export class HookStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  insert(hook: NewHook): WebhookRecord {
    this.sql.exec(
      "INSERT INTO hooks (id, url, events, secret_sealed, created_at, created_by, enabled) VALUES (?, ?, ?, ?, ?, ?, 1)",
      hook.id, hook.url, JSON.stringify(hook.events), hook.secretSealed, hook.createdAt, hook.createdBy,
    );
    return toRecord(this.row(hook.id) as HookRow);
  }

  row(id: string): HookRow | undefined {
    return this.sql.exec<HookRow>("SELECT * FROM hooks WHERE id = ?", id).toArray()[0];
  }

  rows(): HookRow[] {
    return this.sql.exec<HookRow>("SELECT * FROM hooks ORDER BY created_at, id").toArray();
  }

  list(): WebhookRecord[] {
    return this.rows().map(toRecord);
  }

  delete(id: string): void {
    this.sql.exec("DELETE FROM hooks WHERE id = ?", id);
  }
}

export function toRecord(row: HookRow): WebhookRecord {
  return {
    id: row.id,
    url: row.url,
    events: JSON.parse(row.events) as string[],
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
    enabled: row.enabled === 1,
  };
}

export function patternsOf(row: HookRow): string[] {
  return JSON.parse(row.events) as string[];
}
