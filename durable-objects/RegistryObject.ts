import { DurableObject } from "cloudflare:workers";
import type { ObjectsEnv } from "./env.ts";
import { applyMigrations } from "./sql-migrations.ts";

const MIGRATIONS = [`CREATE TABLE apps (org TEXT NOT NULL, app TEXT NOT NULL, PRIMARY KEY (org, app));`] as const;

/**
 * The one global object: every (org, app) pair, so the scheduler's cron reconcile can visit
 * every app without a list of orgs (org objects are found by name only). Written once per app
 * created, read once per cron pass: far from any hot path.
 */
export class RegistryObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, MIGRATIONS);
  }

  addApp(org: string, app: string): void {
    this.sql.exec("INSERT INTO apps (org, app) VALUES (?, ?) ON CONFLICT DO NOTHING", org, app);
  }

  apps(): Array<{ org: string; app: string }> {
    return this.sql.exec<{ org: string; app: string }>("SELECT org, app FROM apps ORDER BY org, app").toArray();
  }
}
