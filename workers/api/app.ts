import { type Context, Hono, type MiddlewareHandler } from "hono";
import type { Health } from "../../protocol/api.ts";
import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";
import type { ApiContext } from "./env.ts";
import { auditMiddleware } from "./audit-middleware.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { agentRoutes } from "./routes/agent.ts";
import { appRoutes } from "./routes/apps.ts";
import { artifactRoutes } from "./routes/artifacts.ts";
import { auditRoutes } from "./routes/audit.ts";
import { eventRoutes } from "./routes/events.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { nodeRoutes } from "./routes/nodes.ts";
import { orgRoutes } from "./routes/orgs.ts";
import { routeRoutes } from "./routes/routes.ts";
import { settingsRoutes } from "./routes/settings.ts";
import { stateRoutes } from "./routes/states.ts";
import { tokenRoutes } from "./routes/tokens.ts";
import { webhookRoutes } from "./routes/webhooks.ts";
import { whoamiRoutes } from "./routes/whoami.ts";

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** Echoes a well-formed X-Request-ID (or mints one) and writes one log line per request. */
const requestContext: MiddlewareHandler<ApiContext> = async (c, next) => {
  const incoming = c.req.header("x-request-id");
  const requestId = incoming && REQUEST_ID_PATTERN.test(incoming) ? incoming : crypto.randomUUID();
  c.set("requestId", requestId);
  const started = Date.now();
  await next();
  tagResponse(c, requestId);
  const level = c.res.status >= 500 ? "error" : c.res.status >= 400 ? "warn" : "info";
  log(level, "api", "request", {
    requestId,
    org: c.var.identity?.org,
    method: c.req.method,
    path: c.req.path,
    status: c.res.status,
    durationMs: Date.now() - started,
  });
};

/** Responses passed through from a Durable Object have immutable headers; WebSocket upgrades are left as they are. */
function tagResponse(c: Context<ApiContext>, requestId: string): void {
  if (c.res.status === 101) return;
  try {
    c.res.headers.set("X-Request-ID", requestId);
  } catch {
    const copy = new Response(c.res.body, c.res);
    copy.headers.set("X-Request-ID", requestId);
    c.res = copy;
  }
}

export function buildApiApp(): Hono<ApiContext> {
  const app = new Hono<ApiContext>();
  app.use("*", requestContext);
  app.use("/api/v1/*", auditMiddleware);
  app.get("/healthz", (c) => c.json({ ok: true, component: "api", version: ZECTRE_VERSION } satisfies Health));
  app.route("/", metricsRoutes);
  app.route("/api/v1", orgRoutes);
  app.route("/api/v1", tokenRoutes);
  app.route("/api/v1", whoamiRoutes);
  app.route("/api/v1", agentRoutes);
  app.route("/api/v1", nodeRoutes);
  app.route("/api/v1", settingsRoutes);
  app.route("/api/v1", jobRoutes);
  app.route("/api/v1", stateRoutes);
  app.route("/api/v1", webhookRoutes);
  app.route("/api/v1", appRoutes);
  app.route("/api/v1", routeRoutes);
  app.route("/api/v1", artifactRoutes);
  app.route("/api/v1", eventRoutes);
  app.route("/api/v1", auditRoutes);
  app.notFound((c) => errorResponse(c, new ApiError("not_found", `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((error, c) => {
    if (error instanceof ApiError) return errorResponse(c, error);
    log("error", "api", "unhandled error", { requestId: c.var.requestId, error: String(error), stack: error.stack });
    return errorResponse(c, new ApiError("internal", "internal error; see the server log for this request id"));
  });
  return app;
}
