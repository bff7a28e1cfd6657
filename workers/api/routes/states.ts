import { Hono } from "hono";
import { orgStub } from "../../../durable-objects/env.ts";
import { MAX_STATE_TREE_BYTES, PushStatesBody } from "../../../protocol/states.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

/** JSON encoding and paths add to the tree's own bytes; the schema checks the tree itself. */
const STATES_BODY_LIMIT = MAX_STATE_TREE_BYTES + 128 * 1024;

export const stateRoutes = new Hono<ApiContext>()
  .use("/states", authenticate())
  .put("/states", requireScope("admin"), limitBody(STATES_BODY_LIMIT), async (c) => {
    const body = await readJson(c, PushStatesBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).pushStates(body.files, actorOf(identity)));
    return c.json(result.info);
  })
  .get("/states", async (c) => {
    const info = await orgStub(c.env, c.get("identity").org).stateTree();
    if (!info) throw new ApiError("not_found", "no state tree has been pushed");
    return c.json(info);
  });
