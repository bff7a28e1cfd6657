import { z } from "zod";
import { ORG_NAME_PATTERN } from "./names.ts";

/**
 * API token format: `zt_<org>_<id>_<secret>`.
 * The org is in the token so the API can route to that org's OrgObject without a
 * global table; the id finds the stored hash; the secret is 256 random bits, so a
 * fast hash (SHA-256) is enough — there is nothing to brute-force.
 */
export const TOKEN_PREFIX = "zt";
/** Enrollment tokens have the same shape with their own prefix, so one can never pass for the other. */
export const ENROLLMENT_TOKEN_PREFIX = "zet";
const TOKEN_ID_PATTERN = /^[0-9a-f]{16}$/;
const TOKEN_SECRET_PATTERN = /^[0-9a-f]{64}$/;

export const SCOPES = ["read", "operate", "admin"] as const;
export const Scope = z.enum(SCOPES);
export type Scope = z.infer<typeof Scope>;

/** Scopes are ordered: `admin` can do what `operate` can, which can do what `read` can. */
export function scopeAllows(held: Scope, needed: Scope): boolean {
  return SCOPES.indexOf(held) >= SCOPES.indexOf(needed);
}

export interface ParsedToken {
  org: string;
  id: string;
  secret: string;
}

export function parseToken(token: string, prefix: string = TOKEN_PREFIX): ParsedToken | null {
  const parts = token.split("_");
  if (parts.length !== 4 || parts[0] !== prefix) return null;
  const [, org, id, secret] = parts as [string, string, string, string];
  if (!ORG_NAME_PATTERN.test(org) || !TOKEN_ID_PATTERN.test(id) || !TOKEN_SECRET_PATTERN.test(secret)) return null;
  return { org, id, secret };
}

export function formatToken(parts: ParsedToken, prefix: string = TOKEN_PREFIX): string {
  return [prefix, parts.org, parts.id, parts.secret].join("_");
}

export function randomHex(bytes: number): string {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function mintToken(org: string): ParsedToken {
  return { org, id: randomHex(8), secret: randomHex(32) };
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
