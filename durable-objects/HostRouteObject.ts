import { DurableObject } from "cloudflare:workers";
import { failure, type Result } from "../protocol/errors.ts";
import { type HostRoute, MAX_ROUTES_PER_APP } from "../protocol/host-routes.ts";
import { applyMigrations } from "./sql-migrations.ts";

const MIGRATIONS = [
  `CREATE TABLE route (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     host TEXT NOT NULL,
     org TEXT NOT NULL,
     app TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL
   );
   CREATE TABLE app_hosts (host TEXT PRIMARY KEY, created_at INTEGER NOT NULL);`,
] as const;

interface RouteRow extends Record<string, SqlStorageValue> {
  host: string;
  org: string;
  app: string;
  created_at: number;
  created_by: string;
}

/**
 * One per custom host name (named by the host): which org's app it serves, so
 * the proxy finds a custom host's app with one lookup. A host belongs to one
 * org's app at a time; claiming it for another is a conflict, so no tenant can
 * take over another's host name.
 *
 * The same class, named `app:<org>/<app>` (no host name contains ':' or '/'),
 * keeps the list of an app's hosts for `zectre route list`: an index beside the
 * host objects, written after a claim and before a release.
 */
export class HostRouteObject extends DurableObject<Record<string, never>> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Record<string, never>) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, MIGRATIONS);
  }

  // ---- as the object of one host ----

  /** Idempotent for the same org and app. */
  claim(host: string, org: string, app: string, by: string): Result<{ route: HostRoute; created: boolean }> {
    const current = this.row();
    if (current) {
      if (current.org === org && current.app === app) return { ok: true, route: toRoute(current), created: false };
      // Another tenant's host looks the same as a taken one: nothing about the owner leaks.
      return failure("conflict", `${host} is already routed to another app`);
    }
    this.sql.exec("INSERT INTO route (id, host, org, app, created_at, created_by) VALUES (1, ?, ?, ?, ?, ?)", host, org, app, Date.now(), by);
    return { ok: true, route: toRoute(this.row() as RouteRow), created: true };
  }

  release(org: string, app: string): Result<{ route: HostRoute }> {
    const current = this.row();
    if (!current || current.org !== org || current.app !== app) return failure("not_found", "no such route for this app");
    this.sql.exec("DELETE FROM route");
    return { ok: true, route: toRoute(current) };
  }

  /** The proxy's lookup. */
  lookup(): { org: string; app: string } | null {
    const current = this.row();
    return current ? { org: current.org, app: current.app } : null;
  }

  route(): HostRoute | null {
    const current = this.row();
    return current ? toRoute(current) : null;
  }

  // ---- as an app's index ----

  /** False when the app already has the most routes allowed. */
  indexAdd(host: string): boolean {
    const count = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM app_hosts").one().n;
    const known = this.sql.exec("SELECT 1 FROM app_hosts WHERE host = ?", host).toArray().length > 0;
    if (!known && count >= MAX_ROUTES_PER_APP) return false;
    this.sql.exec("INSERT INTO app_hosts (host, created_at) VALUES (?, ?) ON CONFLICT (host) DO NOTHING", host, Date.now());
    return true;
  }

  indexRemove(host: string): void {
    this.sql.exec("DELETE FROM app_hosts WHERE host = ?", host);
  }

  indexCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM app_hosts").one().n;
  }

  indexList(): string[] {
    return this.sql.exec<{ host: string }>("SELECT host FROM app_hosts ORDER BY host").toArray().map((r) => r.host);
  }

  private row(): RouteRow | undefined {
    return this.sql.exec<RouteRow>("SELECT * FROM route").toArray()[0];
  }
}

function toRoute(row: RouteRow): HostRoute {
  return { host: row.host, org: row.org, app: row.app, createdAt: new Date(row.created_at).toISOString(), createdBy: row.created_by };
}

/** Which host objects and index objects exist is only ever decided here. */
export function hostRouteName(host: string): string {
  return host;
}

export function appRoutesIndexName(org: string, app: string): string {
  return `app:${org}/${app}`;
}
