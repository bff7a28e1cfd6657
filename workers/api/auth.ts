import type { MiddlewareHandler } from "hono";
import { parseToken, type Scope, scopeAllows } from "../../protocol/tokens.ts";
import { orgStub } from "../../durable-objects/env.ts";
import type { ApiContext, ApiEnv } from "./env.ts";
import { ApiError, unwrap } from "./errors.ts";

function bearer(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match ? (match[1] as string) : null;
}

/** Authenticates the API token; the org comes from the token, so no global lookup is needed. */
export function authenticate(): MiddlewareHandler<ApiContext> {
  return async (c, next) => {
    const raw = bearer(c.req.header("authorization"));
    if (!raw) throw new ApiError("unauthorized", "missing API token: send 'Authorization: Bearer <token>'");
    const token = parseToken(raw);
    if (!token) throw new ApiError("unauthorized", "malformed API token");
    const result = unwrap(await orgStub(c.env, token.org).authenticate(token.id, token.secret));
    c.set("identity", result.identity);
    await next();
  };
}

export function requireScope(needed: Scope): MiddlewareHandler<ApiContext> {
  return async (c, next) => {
    const identity = c.get("identity");
    if (!scopeAllows(identity.scope, needed)) {
      throw new ApiError("forbidden", `this action needs the '${needed}' scope; the token has '${identity.scope}'`);
    }
    await next();
  };
}

export function actorOf(identity: { tokenId: string; tokenName: string }): string {
  return `token:${identity.tokenId}(${identity.tokenName})`;
}

/** Compares the operator secret without leaking its length or prefix through timing. */
export async function isOperator(env: ApiEnv, header: string | undefined): Promise<boolean> {
  const presented = bearer(header);
  if (!env.OPERATOR_SECRET || !presented) return false;
  const digest = async (s: string) => new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  return crypto.subtle.timingSafeEqual(await digest(presented), await digest(env.OPERATOR_SECRET));
}
