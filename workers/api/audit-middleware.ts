import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { orgStub } from "../../durable-objects/env.ts";
import type { AuditRequestRecord } from "../../protocol/events.ts";
import { log } from "../lib/log.ts";
import { actorOf } from "./auth.ts";
import type { ApiContext } from "./env.ts";

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const API_PREFIX = "/api/v1";
/**
 * Where creating routes put what they created (`{jid}`, `{record: {id}}`, `{app: {name}}`, ...), so
 * `POST /jobs` names its job. Only these are read: never `token` or `secret`.
 */
const CREATED_OBJECT_KEYS = ["record", "app", "deployment", "webhook"] as const;

/** The pattern of the handler that answered (`/apps/:app/deployments`), not the middleware's `*`. */
function routePattern(c: Context<ApiContext>): string {
  const routes = matchedRoutes(c).filter((r) => r.method === c.req.method);
  const path = routes.at(-1)?.path ?? c.req.path;
  return path.startsWith(API_PREFIX) ? path.slice(API_PREFIX.length) || "/" : path;
}

/** The values of the pattern's `:params` in the request path, in order. */
function pathIds(pattern: string, path: string): string[] {
  const wanted = pattern.split("/");
  const actual = path.slice(API_PREFIX.length).split("/");
  return wanted.flatMap((segment, i) => (segment.startsWith(":") && actual[i] !== undefined ? [decodeURIComponent(actual[i])] : []));
}

/** Small JSON bodies only; secrets in them (a new token) are never copied, only whitelisted ids. */
async function responseJson(c: Context<ApiContext>): Promise<Record<string, unknown> | null> {
  if (!(c.res.headers.get("content-type") ?? "").includes("application/json")) return null;
  try {
    const value: unknown = await c.res.clone().json();
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function createdId(c: Context<ApiContext>, body: Record<string, unknown> | null): string[] {
  if (c.res.status !== 201 && c.res.status !== 202) return [];
  if (typeof body?.["jid"] === "string") return [body["jid"]];
  for (const key of CREATED_OBJECT_KEYS) {
    const value = body?.[key];
    if (typeof value !== "object" || value === null) continue;
    const { id, name } = value as { id?: unknown; name?: unknown };
    if (typeof id === "string") return [id];
    if (typeof name === "string") return [name];
  }
  return [];
}

function errorCode(body: Record<string, unknown> | null): Record<string, string> {
  const error = body?.["error"];
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" ? { error: code } : {};
}

function clientIp(c: Context<ApiContext>): string | null {
  const direct = c.req.header("cf-connecting-ip");
  if (direct) return direct;
  const forwarded = c.req.header("x-forwarded-for")?.split(",")[0]?.trim();
  return forwarded ? forwarded : null;
}

/** Org creation is the operator's, before any API token exists: the new org is read from the answer. */
function createdOrg(c: Context<ApiContext>, pattern: string, body: Record<string, unknown> | null): string | null {
  if (c.req.method !== "POST" || pattern !== "/orgs" || c.res.status !== 201) return null;
  const org = body?.["org"];
  const name = typeof org === "object" && org !== null ? (org as { name?: unknown }).name : undefined;
  return typeof name === "string" ? name : null;
}

/**
 * Records every mutating API request made with an API token (and org creation by
 * the operator) in the org's audit log, after the handler ran, so the status is
 * known. Request bodies are never recorded: only ids from the path and the answer.
 * Recording never fails the request it describes.
 */
export const auditMiddleware: MiddlewareHandler<ApiContext> = async (c, next) => {
  await next();
  if (!MUTATING.has(c.req.method)) return;
  const identity = c.get("identity") as ApiContext["Variables"]["identity"] | undefined;
  const pattern = routePattern(c);
  const body = await responseJson(c);
  const operatorOrg = identity ? null : createdOrg(c, pattern, body);
  const org = identity?.org ?? operatorOrg;
  if (!org) return;
  const entry: AuditRequestRecord = {
    actor: identity ? actorOf(identity) : "operator",
    tokenId: identity?.tokenId ?? null,
    tokenName: identity?.tokenName ?? null,
    action: `${c.req.method} ${pattern}`,
    target: [...pathIds(pattern, c.req.path), ...createdId(c, body)].join("/") || (operatorOrg ?? ""),
    details: errorCode(body),
    ip: clientIp(c),
    requestId: c.get("requestId"),
    status: c.res.status,
  };
  try {
    await orgStub(c.env, org).recordAudit(entry);
  } catch (error) {
    log("error", "audit", "recording an audit entry failed", { requestId: c.get("requestId"), org, action: entry.action, error: String(error) });
  }
};
