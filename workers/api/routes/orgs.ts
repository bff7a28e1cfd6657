import { Hono } from "hono";
import { CreateOrgBody, UpdateOrgBody } from "../../../protocol/api.ts";
import { orgStub, registryStub } from "../../../durable-objects/env.ts";
import { actorOf, authenticate, isOperator, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

const SMALL_BODY = 4 * 1024;

/** `POST /orgs` is the operator's; the rest act on the caller's own org only. */
export const orgRoutes = new Hono<ApiContext>()
  .post("/orgs", limitBody(SMALL_BODY), async (c) => {
    if (!c.env.OPERATOR_SECRET) {
      throw new ApiError("forbidden", "org creation is disabled: set the OPERATOR_SECRET secret on the API Worker");
    }
    if (!(await isOperator(c.env, c.req.header("authorization")))) {
      throw new ApiError("unauthorized", "creating an org needs the operator secret as the bearer token");
    }
    const body = await readJson(c, CreateOrgBody);
    const creating = await orgStub(c.env, body.name).createOrg(body.name, body.adminTokenName);
    // Listed for the installation-wide /metrics; an existing org is listed too, so repeating the request heals a lost write.
    if (creating.ok || creating.code === "conflict") await registryStub(c.env).addOrg(body.name);
    const created = unwrap(creating);
    return c.json({ org: created.org, admin: created.admin }, 201);
  })
  .use("/org", authenticate())
  .use("/orgs/:org", authenticate())
  .get("/org", async (c) => c.json({ org: await ownOrg(c.env, c.get("identity").org) }))
  .get("/orgs/:org", async (c) => {
    // Another org's name answers exactly like a missing one: no existence oracle.
    if (c.req.param("org") !== c.get("identity").org) throw new ApiError("not_found", "org not found");
    return c.json({ org: await ownOrg(c.env, c.get("identity").org) });
  })
  .patch("/org", requireScope("admin"), limitBody(SMALL_BODY), async (c) => {
    const body = await readJson(c, UpdateOrgBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).updateOrg(body, actorOf(identity)));
    return c.json({ org: result.org });
  });

async function ownOrg(env: ApiContext["Bindings"], org: string) {
  const info = await orgStub(env, org).getOrg();
  if (!info) throw new ApiError("not_found", "org not found");
  return info;
}
