import { Hono } from "hono";
import { orgStub } from "../../../durable-objects/env.ts";
import { DeleteSettingBody, LABEL_KEY_PATTERN, NODE_ID_PATTERN, PutSettingBody, type SettingScope } from "../../../protocol/nodes.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

/** Settings values are JSON documents; 64 KiB each is plenty and keeps pushes small. */
const SETTING_BODY_LIMIT = 64 * 1024;

/** `org`, `label:KEY=VALUE` or `node:ID` in a query string. */
function parseScopeQuery(raw: string | undefined): SettingScope | null {
  if (raw === undefined || raw === "") return null;
  if (raw === "org") return { kind: "org" };
  if (raw.startsWith("node:") && NODE_ID_PATTERN.test(raw.slice(5))) return { kind: "node", nodeId: raw.slice(5) };
  const label = /^label:([^=]+)=(.*)$/.exec(raw);
  if (label && LABEL_KEY_PATTERN.test(label[1] as string)) return { kind: "label", key: label[1] as string, value: label[2] as string };
  throw new ApiError("bad_request", `bad scope '${raw}': use org, label:KEY=VALUE or node:ID`);
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
