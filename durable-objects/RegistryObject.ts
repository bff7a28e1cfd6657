import { DurableObject } from "cloudflare:workers";
import type { ObjectsEnv } from "./env.ts";
import { applyMigrations } from "./sql-migrations.ts";

const MIGRATIONS = [
  `CREATE TABLE apps (org TEXT NOT NULL, app TEXT NOT NULL, PRIMARY KEY (org, app));`,
  // Every org, for the installation-wide /metrics. Orgs created before this table are known only if they have an app.
  `CREATE TABLE orgs (org TEXT PRIMARY KEY);
   INSERT INTO orgs (org) SELECT DISTINCT org FROM apps;`,
] as const;

/**
 * The one global object: every (org, app) pair, so the scheduler's cron reconcile can visit
 * every app without a list of orgs (org objects are found by name only), and every org, so the
 * operator's /metrics can visit every org object. Written once per app or org created, read once
 * per cron pass or scrape: far from any hot path.
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

  addOrg(org: string): void {
    this.sql.exec("INSERT INTO orgs (org) VALUES (?) ON CONFLICT DO NOTHING", org);
  }

  orgs(): string[] {
    return this.sql.exec<{ org: string }>("SELECT org FROM orgs ORDER BY org").toArray().map((r) => r.org);
  }

  apps(): Array<{ org: string; app: string }> {
    return this.sql.exec<{ org: string; app: string }>("SELECT org, app FROM apps ORDER BY org, app").toArray();
  }
}
