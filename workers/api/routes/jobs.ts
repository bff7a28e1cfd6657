import { Hono } from "hono";
import { jobStub, orgStub } from "../../../durable-objects/env.ts";
import { CreateJobBody, JID_PATTERN, newJid } from "../../../protocol/jobs.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";
import { parseTargetOrThrow } from "../targets.ts";

/** Jobs may carry file contents for file.write. */
const JOB_BODY_LIMIT = 256 * 1024;
const LIST_LIMIT_MAX = 500;

/** The expression is checked here (a bad one is a 400), then resolved in the org object over its node directory. */
async function resolveTargets(env: ApiEnv, org: string, body: CreateJobBody): Promise<{ expression: string; ids: string[] }> {
  const expression = body.targets ? `L@${body.targets.join(",")}` : (body.target as string);
  parseTargetOrThrow(expression);
  return { expression, ids: await orgStub(env, org).resolveTargets(expression) };
}

function jidParam(raw: string): string {
  // Anything that is not a jid cannot name a job: same answer as an unknown one.
  if (!JID_PATTERN.test(raw)) throw new ApiError("not_found", `job ${raw} not found`);
  return raw;
}

export const jobRoutes = new Hono<ApiContext>()
  .use("/jobs", authenticate())
  .use("/jobs/*", authenticate())
  .post("/jobs", requireScope("operate"), limitBody(JOB_BODY_LIMIT), async (c) => {
    const body = await readJson(c, CreateJobBody);
    const identity = c.get("identity");
    const { expression, ids } = await resolveTargets(c.env, identity.org, body);
    if (ids.length === 0) throw new ApiError("bad_request", "no nodes matched target");
    const jid = newJid();
    const result = unwrap(
      await jobStub(c.env, identity.org, jid).start({
        org: identity.org,
        jid,
        function: body.function,
        args: body.args,
        target: expression,
        targets: ids,
        timeout: body.timeout,
        test: body.test,
        metadata: body.metadata,
        user: identity.tokenName,
      }),
    );
    return c.json({ jid, targets: ids, status: result.status }, 202);
  })
  .get("/jobs", async (c) => {
    const limit = Math.min(LIST_LIMIT_MAX, Math.max(1, Number(c.req.query("limit") ?? "50") || 50));
    return c.json({ jobs: await orgStub(c.env, c.get("identity").org).listJobs(limit) });
  })
  .get("/jobs/active", async (c) => c.json({ jobs: await orgStub(c.env, c.get("identity").org).activeJobs() }))
  .get("/jobs/:jid", async (c) => {
    const jid = jidParam(c.req.param("jid"));
    const job = await jobStub(c.env, c.get("identity").org, jid).get();
    if (!job) throw new ApiError("not_found", `job ${jid} not found`);
    return c.json({ job });
  })
  .post("/jobs/:jid/cancel", requireScope("operate"), async (c) => {
    const jid = jidParam(c.req.param("jid"));
    const identity = c.get("identity");
    const result = unwrap(await jobStub(c.env, identity.org, jid).cancel(actorOf(identity)));
    return c.json({ jid, status: result.status }, 202);
  })
  .get("/jobs/:jid/events", async (c) => {
    const jid = jidParam(c.req.param("jid"));
    const since = c.req.query("since") ?? "0";
    return jobStub(c.env, c.get("identity").org, jid).fetch(`https://job/events?since=${encodeURIComponent(since)}`);
  });
