import { Hono } from "hono";
import { orgStub } from "../../../durable-objects/env.ts";
import { DeleteSettingBody, parseSettingScopeText, PutSettingBody, type SettingScope } from "../../../protocol/nodes.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

/** Settings values are JSON documents; 64 KiB each is plenty and keeps pushes small. */
const SETTING_BODY_LIMIT = 64 * 1024;

function parseScopeQuery(raw: string | undefined): SettingScope | null {
  if (raw === undefined || raw === "") return null;
  const scope = parseSettingScopeText(raw);
  if (!scope) throw new ApiError("bad_request", `bad scope '${raw}': use org, label:KEY=VALUE or node:ID`);
  return scope;
}

export const settingsRoutes = new Hono<ApiContext>()
  .use("/settings", authenticate())
  .get("/settings", async (c) => {
    const scope = parseScopeQuery(c.req.query("scope"));
    return c.json({ settings: await orgStub(c.env, c.get("identity").org).listSettings(scope) });
  })
  .put("/settings", requireScope("admin"), limitBody(SETTING_BODY_LIMIT), async (c) => {
    const body = await readJson(c, PutSettingBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).putSetting(body.scope, body.key, body.value, actorOf(identity)));
    return c.json({ setting: result.setting });
  })
  .delete("/settings", requireScope("admin"), limitBody(SETTING_BODY_LIMIT), async (c) => {
    const body = await readJson(c, DeleteSettingBody);
    const identity = c.get("identity");
    const result = unwrap(await orgStub(c.env, identity.org).deleteSetting(body.scope, body.key, actorOf(identity)));
    return c.json({ deleted: result.deleted });
  });
