import { Hono } from "hono";
import { nodeStub, orgStub } from "../../../durable-objects/env.ts";
import { SetDirectBody } from "../../../protocol/direct.ts";
import {
  CreateEnrollmentTokenBody,
  EnrollmentAction,
  EnrollmentState,
  type NodeDetail,
  SetLabelsBody,
} from "../../../protocol/nodes.ts";
import { parseTargetOrThrow } from "../targets.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

const SMALL_BODY = 8 * 1024;
const DEFAULT_STATES: readonly EnrollmentState[] = ["approved", "active"];

function parseStates(raw: string | undefined): readonly EnrollmentState[] | null {
  if (raw === undefined || raw === "") return DEFAULT_STATES;
  if (raw === "all") return null;
  return raw.split(",").map((s) => {
    const parsed = EnrollmentState.safeParse(s.trim());
    if (!parsed.success) throw new ApiError("bad_request", `unknown state '${s}': use ${EnrollmentState.options.join(", ")} or all`);
    return parsed.data;
  });
}


/** An optional JSON body: absent is fine, present must be valid. */
async function optionalBody<T>(c: Parameters<typeof readJson>[0], schema: Parameters<typeof readJson>[1]): Promise<T | undefined> {
  if (!c.req.header("content-type") && (c.req.header("content-length") ?? "0") === "0") return undefined;
  return (await readJson(c, schema)) as T;
}

export const nodeRoutes = new Hono<ApiContext>()
  .use("/enrollment-tokens", authenticate(), requireScope("admin"))
  .use("/enrollment-tokens/*", authenticate(), requireScope("admin"))
  .use("/nodes", authenticate())
  .use("/nodes/*", authenticate())
  .post("/enrollment-tokens", limitBody(SMALL_BODY), async (c) => {
    const body = await readJson(c, CreateEnrollmentTokenBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).createEnrollmentToken(body, actorOf(identity)));
    return c.json({ token: result.token, record: result.record }, 201);
  })
  .get("/enrollment-tokens", async (c) => {
    const all = c.req.query("all") === "true";
    return c.json({ tokens: await orgStub(c.env, c.get("identity").org).listEnrollmentTokens(all) });
  })
  .delete("/enrollment-tokens/:id", async (c) => {
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).revokeEnrollmentToken(c.req.param("id"), actorOf(identity)));
    return c.json({ token: result.record });
  })
  .get("/nodes", async (c) => {
    const states = parseStates(c.req.query("state"));
    const target = c.req.query("target");
    const org = orgStub(c.env, c.get("identity").org);
    if (target === undefined || target === "") return c.json({ nodes: await org.listNodes(states) });
    parseTargetOrThrow(target);
    return c.json({ nodes: await org.previewTarget(target, states) });
  })
  .post("/nodes/approve-pending", requireScope("admin"), async (c) => {
    const identity = c.get("identity");
    return c.json({ nodes: await orgStub(c.env, identity.org).approvePending(actorOf(identity)) });
  })
  .get("/nodes/:id", async (c) => {
    const identity = c.get("identity");
    const id = c.req.param("id");
    const org = orgStub(c.env, identity.org);
    const entry = await org.nodeEntry(id);
    if (!entry) throw new ApiError("not_found", `node '${id}' not found`);
    const live = await nodeStub(c.env, identity.org, id).detail();
    const merged = unwrap(await org.mergedSettings(id));
    const node: NodeDetail = {
      ...entry.summary,
      facts: live.facts ?? entry.facts,
      settings: merged.settings,
      connectedAt: live.connectedAt === null ? null : new Date(live.connectedAt).toISOString(),
    };
    return c.json({ node });
  })
  .get("/nodes/:id/settings", async (c) => {
    const merged = unwrap(await orgStub(c.env, c.get("identity").org).mergedSettings(c.req.param("id")));
    return c.json({ settings: merged.settings, sources: merged.sources });
  })
  .post("/nodes/:id/:action{approve|reject|revoke}", requireScope("admin"), limitBody(SMALL_BODY), async (c) => {
    const body = await optionalBody<EnrollmentAction>(c, EnrollmentAction);
    const identity = c.get("identity");
    const action = c.req.param("action") as "approve" | "reject" | "revoke";
    const result = unwrap(
      await orgStub(c.env, identity.org).transitionNode(c.req.param("id"), action, body?.reason ?? null, actorOf(identity)),
    );
    return c.json({ node: result.node });
  })
  .patch("/nodes/:id/labels", requireScope("operate"), limitBody(SMALL_BODY), async (c) => {
    const body = await readJson(c, SetLabelsBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).setLabels(c.req.param("id"), body.labels, actorOf(identity)));
    return c.json({ node: result.node });
  })
  // Admin only: the address names a host the proxy will connect to.
  .put("/nodes/:id/direct", requireScope("admin"), limitBody(SMALL_BODY), async (c) => {
    const body = await readJson(c, SetDirectBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).setDirectAddress(c.req.param("id"), body.address, actorOf(identity)));
    return c.json({ node: result.node });
  });
