import { Hono } from "hono";
import { orgStub } from "../../../durable-objects/env.ts";
import { parseDuration } from "../../../protocol/duration.ts";
import { AUDIT_LIMIT_DEFAULT, AUDIT_LIMIT_MAX } from "../../../protocol/events.ts";
import { authenticate, requireScope } from "../auth.ts";
import type { ApiContext } from "../env.ts";
import { ApiError } from "../errors.ts";

/** `since` is a duration back from now (`10m`, `24h`) or an ISO timestamp; absent means from the beginning. */
export function parseAuditSince(raw: string | undefined, now: number): number {
  if (raw === undefined || raw === "") return 0;
  const seconds = parseDuration(raw);
  if (seconds !== null) return now - seconds * 1000;
  const at = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(at)) throw new ApiError("bad_request", `since must be a duration like 10m or 24h, or an ISO time; got '${raw}'`);
  return at;
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined || raw === "") return AUDIT_LIMIT_DEFAULT;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > AUDIT_LIMIT_MAX) {
    throw new ApiError("bad_request", `limit must be an integer from 1 to ${AUDIT_LIMIT_MAX}`);
  }
  return limit;
}

/** `GET /audit`: the org's audit entries, newest first. */
export const auditRoutes = new Hono<ApiContext>()
  .use("/audit", authenticate())
  .get("/audit", requireScope("read"), async (c) => {
    const since = parseAuditSince(c.req.query("since"), Date.now());
    const limit = parseLimit(c.req.query("limit"));
    return c.json({ entries: await orgStub(c.env, c.get("identity").org).listAudit(since, limit) });
  });
