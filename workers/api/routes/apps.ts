import { type Context, Hono } from "hono";
import { z } from "zod";
import { appStub, orgStub, registryStub } from "../../../durable-objects/env.ts";
import { AppName, CreateDeploymentBody, DeploymentId, EnvName, MAX_REPLICAS, newDeploymentId } from "../../../protocol/deployments.ts";
import { parseDuration } from "../../../protocol/duration.ts";
import { appUrl, previewUrl } from "../../../protocol/routes.ts";
import { log } from "../../lib/log.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";
import { parseTargetOrThrow } from "../targets.ts";

const SMALL_BODY = 4 * 1024;
const DEPLOYMENT_BODY = 128 * 1024;
const ENV_BODY = 40 * 1024;
const LOG_LIMIT_MAX = 10_000;

const CreateAppBody = z.object({ name: AppName }).strict();
const ScaleBody = z.object({ replicas: z.number().int().min(0).max(MAX_REPLICAS) }).strict();
const SetEnvBody = z.object({ value: z.string().max(32 * 1024), secret: z.boolean().default(false) }).strict();

function appParam(c: Context<ApiContext>): string {
  const parsed = AppName.safeParse(c.req.param("app"));
  // A name that cannot be an app cannot name one: same answer as an unknown app.
  if (!parsed.success) throw new ApiError("not_found", `app ${c.req.param("app")} not found`);
  return parsed.data;
}

function proxyBase(env: ApiEnv): string {
  return env.PUBLIC_PROXY_URL ?? "http://localhost:47000";
}

function urlsFor(env: ApiEnv, org: string, app: string, deploymentId: string): { previewUrl: string; appUrl: string } {
  return { previewUrl: previewUrl(proxyBase(env), org, app, deploymentId), appUrl: appUrl(proxyBase(env), org, app) };
}

/** Places right away; if the scheduler cannot be reached the next cron pass places instead, so this never fails the request. */
async function scheduleSoon(env: ApiEnv, org: string, app: string): Promise<void> {
  try {
    await env.SCHEDULER.reconcileApp(org, app, lostGraceSeconds(env));
  } catch (error) {
    log("warn", "api", "scheduler unreachable; the cron will place", { org, app, error: String(error) });
  }
}

export function lostGraceSeconds(env: ApiEnv): number {
  const value = Number(env.NODE_LOST_GRACE_SECONDS ?? "60");
  return Number.isFinite(value) && value >= 0 ? value : 60;
}

async function existingApp(env: ApiEnv, org: string, app: string) {
  const summary = await appStub(env, org, app).summary();
  if (!summary) throw new ApiError("not_found", `app ${app} not found`);
  return summary;
}

async function appOfDeployment(env: ApiEnv, org: string, raw: string): Promise<{ app: string; id: string }> {
  const parsed = DeploymentId.safeParse(raw);
  const app = parsed.success ? await orgStub(env, org).appOfDeployment(parsed.data) : null;
  if (!parsed.success || app === null) throw new ApiError("not_found", `deployment ${raw} not found`);
  return { app, id: parsed.data };
}

/** Every layer must already be stored for this org, with the size the deployment claims. */
async function checkArtifacts(env: ApiEnv, org: string, body: CreateDeploymentBody): Promise<void> {
  for (const ref of body.artifacts) {
    const head = await env.ARTIFACTS.head(`${org}/sha256/${ref.digest}`);
    if (!head) throw new ApiError("bad_request", `artifact ${ref.digest} (${ref.layer}) is not uploaded; push it first`);
    if (head.size !== ref.size) throw new ApiError("bad_request", `artifact ${ref.digest} is ${head.size} bytes, not ${ref.size}`);
  }
}

function sinceMs(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 0;
  const seconds = parseDuration(raw);
  if (seconds !== null) return Date.now() - seconds * 1000;
  const parsed = Date.parse(raw);
  if (Number.isNaN(parsed)) throw new ApiError("bad_request", "since must be a duration like 10m or an ISO timestamp");
  return parsed;
}

export const appRoutes = new Hono<ApiContext>()
  .use("/apps", authenticate())
  .use("/apps/*", authenticate())
  .use("/deployments/*", authenticate())
  .post("/apps", requireScope("operate"), limitBody(SMALL_BODY), async (c) => {
    const { name } = await readJson(c, CreateAppBody);
    const identity = c.get("identity");
    // Indexed first: a crash after this leaves a listed name whose object is empty, which reads as absent.
    await orgStub(c.env, identity.org).appCreated(name);
    await registryStub(c.env).addApp(identity.org, name);
    const created = unwrap(await appStub(c.env, identity.org, name).create(identity.org, name, actorOf(identity)));
    return c.json({ app: created.app }, 201);
  })
  .get("/apps", async (c) => {
    const org = c.get("identity").org;
    const names = await orgStub(c.env, org).appNames();
    const summaries = await Promise.all(names.map((name) => appStub(c.env, org, name).summary()));
    return c.json({ apps: summaries.filter((s) => s !== null) });
  })
  .get("/apps/:app", async (c) => {
    const org = c.get("identity").org;
    const app = appParam(c);
    const summary = await existingApp(c.env, org, app);
    return c.json({ app: summary, deployments: await appStub(c.env, org, app).listDeployments() });
  })
  .post("/apps/:app/deployments", requireScope("operate"), limitBody(DEPLOYMENT_BODY), async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    const body = await readJson(c, CreateDeploymentBody);
    for (const constraint of body.constraints) parseTargetOrThrow(constraint);
    await existingApp(c.env, identity.org, app);
    await checkArtifacts(c.env, identity.org, body);
    const id = newDeploymentId();
    await orgStub(c.env, identity.org).deploymentCreated(id, app);
    unwrap(await appStub(c.env, identity.org, app).createDeployment(id, body, actorOf(identity)));
    await scheduleSoon(c.env, identity.org, app);
    const deployment = await appStub(c.env, identity.org, app).deployment(id);
    return c.json({ deployment, ...urlsFor(c.env, identity.org, app, id) }, 201);
  })
  .get("/apps/:app/deployments", async (c) => {
    const org = c.get("identity").org;
    const app = appParam(c);
    await existingApp(c.env, org, app);
    return c.json({ deployments: await appStub(c.env, org, app).listDeployments(100) });
  })
  .get("/deployments/:id", async (c) => {
    const org = c.get("identity").org;
    const { app, id } = await appOfDeployment(c.env, org, c.req.param("id"));
    const deployment = await appStub(c.env, org, app).deployment(id);
    if (!deployment) throw new ApiError("not_found", `deployment ${id} not found`);
    return c.json({ deployment, ...urlsFor(c.env, org, app, id) });
  })
  .post("/deployments/:id/promote", requireScope("operate"), async (c) => {
    const identity = c.get("identity");
    const { app, id } = await appOfDeployment(c.env, identity.org, c.req.param("id"));
    const { deployment } = unwrap(await appStub(c.env, identity.org, app).promote(id, actorOf(identity)));
    await scheduleSoon(c.env, identity.org, app);
    return c.json({ deployment, appUrl: appUrl(proxyBase(c.env), identity.org, app) });
  })
  .post("/apps/:app/rollback", requireScope("operate"), limitBody(SMALL_BODY), async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    await existingApp(c.env, identity.org, app);
    const result = unwrap(await appStub(c.env, identity.org, app).rollback(actorOf(identity)));
    await scheduleSoon(c.env, identity.org, app);
    return c.json({ deployment: result.deployment, from: result.from, appUrl: appUrl(proxyBase(c.env), identity.org, app) });
  })
  .post("/apps/:app/scale", requireScope("operate"), limitBody(SMALL_BODY), async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    const { replicas } = await readJson(c, ScaleBody);
    await existingApp(c.env, identity.org, app);
    const result = unwrap(await appStub(c.env, identity.org, app).scale(replicas, actorOf(identity)));
    await scheduleSoon(c.env, identity.org, app);
    return c.json({ deployment: result.deployment });
  })
  .get("/apps/:app/env", async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    const reveal = c.req.query("reveal") === "1" || c.req.query("reveal") === "true";
    if (reveal && identity.scope !== "admin") throw new ApiError("forbidden", "revealing secrets needs an admin token");
    await existingApp(c.env, identity.org, app);
    return c.json({ env: await appStub(c.env, identity.org, app).listEnv(reveal) });
  })
  .put("/apps/:app/env/:name", requireScope("operate"), limitBody(ENV_BODY), async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    const name = EnvName.safeParse(c.req.param("name"));
    if (!name.success) throw new ApiError("bad_request", `bad variable name: ${name.error.issues[0]?.message ?? "invalid"}`);
    const body = await readJson(c, SetEnvBody);
    await existingApp(c.env, identity.org, app);
    return c.json(unwrap(await appStub(c.env, identity.org, app).setEnv(name.data, body.value, body.secret, actorOf(identity))));
  })
  .delete("/apps/:app/env/:name", requireScope("operate"), async (c) => {
    const identity = c.get("identity");
    const app = appParam(c);
    await existingApp(c.env, identity.org, app);
    return c.json(unwrap(await appStub(c.env, identity.org, app).unsetEnv(c.req.param("name"))));
  })
  .get("/apps/:app/events", async (c) => {
    const org = c.get("identity").org;
    const app = appParam(c);
    await existingApp(c.env, org, app);
    const since = c.req.query("since") ?? "0";
    return appStub(c.env, org, app).fetch(`https://app/events?since=${encodeURIComponent(since)}`);
  })
  .get("/apps/:app/logs", async (c) => {
    const org = c.get("identity").org;
    const app = appParam(c);
    await existingApp(c.env, org, app);
    const deployment = c.req.query("deployment");
    if (deployment !== undefined && !DeploymentId.safeParse(deployment).success) throw new ApiError("bad_request", "deployment must be a deployment id");
    const since = sinceMs(c.req.query("since"));
    const limit = Math.min(LOG_LIMIT_MAX, Math.max(1, Number(c.req.query("limit") ?? "200") || 200));
    if (c.req.query("follow") === "1" || c.req.query("follow") === "true") {
      const params = new URLSearchParams({ sinceMs: String(since), limit: String(limit), ...(deployment ? { deployment } : {}) });
      return appStub(c.env, org, app).fetch(`https://app/logs?${params}`);
    }
    return c.json({ lines: await appStub(c.env, org, app).logs({ deploymentId: deployment, sinceMs: since, limit }) });
  });
