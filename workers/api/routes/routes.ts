import { type Context, Hono, type MiddlewareHandler } from "hono";
import { appStub } from "../../../durable-objects/env.ts";
import { appRoutesIndexName, hostRouteName } from "../../../durable-objects/HostRouteObject.ts";
import { AppName } from "../../../protocol/deployments.ts";
import { AddRouteBody, HostName, type HostRoute, MAX_ROUTES_PER_APP, reservedHostProblem } from "../../../protocol/host-routes.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

/**
 * Custom host names of an app: `POST/GET /apps/:app/routes`, `DELETE /apps/:app/routes/:host`.
 * The proxy finds a custom host's app in the host's own HostRouteObject; each app
 * also keeps an index of its hosts for listing.
 */

const SMALL_BODY = 2 * 1024;

/** The apps routes authenticate `/apps/*` already; this only runs when they did not (another mount order). */
const authenticated: MiddlewareHandler<ApiContext> = async (c, next) => {
  if (c.get("identity")) return next();
  return authenticate()(c, next);
};

function hostRoutes(env: ApiEnv, name: string) {
  return env.HOST_ROUTES.get(env.HOST_ROUTES.idFromName(name));
}

async function existingApp(c: Context<ApiContext>): Promise<string> {
  const parsed = AppName.safeParse(c.req.param("app"));
  const app = parsed.success ? parsed.data : null;
  if (!app || !(await appStub(c.env, c.get("identity").org, app).summary())) throw new ApiError("not_found", `app ${c.req.param("app")} not found`);
  return app;
}

function proxyDomain(env: ApiEnv): string {
  return new URL(env.PUBLIC_PROXY_URL ?? "http://localhost:47000").hostname;
}

/** Only routes that still name this app: an index entry left by an interrupted remove is skipped. */
async function listRoutes(env: ApiEnv, org: string, app: string): Promise<HostRoute[]> {
  const hosts = await hostRoutes(env, appRoutesIndexName(org, app)).indexList();
  const routes = await Promise.all(hosts.map((host) => hostRoutes(env, hostRouteName(host)).route()));
  return routes.filter((r): r is HostRoute => r !== null && r.org === org && r.app === app);
}

export const routeRoutes = new Hono<ApiContext>()
  .use("/apps/:app/routes", authenticated)
  .use("/apps/:app/routes/*", authenticated)
  .get("/apps/:app/routes", async (c) => {
    const app = await existingApp(c);
    return c.json({ routes: await listRoutes(c.env, c.get("identity").org, app) });
  })
  .post("/apps/:app/routes", requireScope("operate"), limitBody(SMALL_BODY), async (c) => {
    const { host } = await readJson(c, AddRouteBody);
    const identity = c.get("identity");
    const app = await existingApp(c);
    const problem = reservedHostProblem(host, proxyDomain(c.env), new URL(c.req.url).hostname);
    if (problem) throw new ApiError("bad_request", problem);
    // Index first, so a host is never routed without being listed; the index also enforces the per-app limit.
    const index = hostRoutes(c.env, appRoutesIndexName(identity.org, app));
    if (!(await index.indexAdd(host))) throw new ApiError("conflict", `an app may have at most ${MAX_ROUTES_PER_APP} custom host names`);
    const claimed = await hostRoutes(c.env, hostRouteName(host)).claim(host, identity.org, app, actorOf(identity));
    if (!claimed.ok) await index.indexRemove(host);
    const result = unwrap(claimed);
    return c.json({ route: result.route }, result.created ? 201 : 200);
  })
  .delete("/apps/:app/routes/:host", requireScope("operate"), async (c) => {
    const identity = c.get("identity");
    const app = await existingApp(c);
    const parsed = HostName.safeParse(c.req.param("host"));
    if (!parsed.success) throw new ApiError("not_found", `no route ${c.req.param("host")} for app ${app}`);
    const released = await hostRoutes(c.env, hostRouteName(parsed.data)).release(identity.org, app);
    if (!released.ok) throw new ApiError("not_found", `no route ${parsed.data} for app ${app}`);
    await hostRoutes(c.env, appRoutesIndexName(identity.org, app)).indexRemove(parsed.data);
    return c.json({ route: released.route });
  });
