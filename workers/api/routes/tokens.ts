import { Hono } from "hono";
import { CreateTokenBody } from "../../../protocol/api.ts";
import { orgStub } from "../../../durable-objects/env.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { unwrap } from "../errors.ts";

const TOKEN_BODY_LIMIT = 4 * 1024;

export const tokenRoutes = new Hono<ApiContext>()
  .use("/tokens", authenticate(), requireScope("admin"))
  .use("/tokens/*", authenticate(), requireScope("admin"))
  .get("/tokens", async (c) => {
    const includeRevoked = c.req.query("all") === "true";
    return c.json({ tokens: await orgStub(c.env, c.get("identity").org).listTokens(includeRevoked) });
  })
  .post("/tokens", limitBody(TOKEN_BODY_LIMIT), async (c) => {
    const body = await readJson(c, CreateTokenBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).createToken(body, actorOf(identity)));
    return c.json(result.created, 201);
  })
  .delete("/tokens/:id", async (c) => {
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).revokeToken(c.req.param("id"), actorOf(identity)));
    return c.json({ token: result.record });
  });
