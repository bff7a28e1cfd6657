import { z } from "zod";
import { OrgName, TokenName } from "./names.ts";
import { Scope } from "./tokens.ts";

/** Request and response bodies of `/api/v1`. Request schemas are strict: unknown fields are errors. */

export const MAX_TOKEN_TTL_SECONDS = 5 * 365 * 86400;

export const CreateOrgBody = z
  .object({
    name: OrgName,
    adminTokenName: TokenName.default("admin"),
  })
  .strict();
export type CreateOrgBody = z.infer<typeof CreateOrgBody>;

export const CreateTokenBody = z
  .object({
    name: TokenName,
    scope: Scope,
    /** Lifetime in seconds; omitted means the token does not expire. */
    ttlSeconds: z.number().int().min(60).max(MAX_TOKEN_TTL_SECONDS).optional(),
  })
  .strict();
export type CreateTokenBody = z.infer<typeof CreateTokenBody>;

export const UpdateOrgBody = z
  .object({
    /** Requests per minute allowed for each API token of the org. */
    rateLimitPerMinute: z.number().int().min(1).max(1_000_000),
  })
  .strict();
export type UpdateOrgBody = z.infer<typeof UpdateOrgBody>;

export interface OrgInfo {
  name: string;
  createdAt: string;
  rateLimitPerMinute: number;
}

export interface TokenRecord {
  id: string;
  name: string;
  scope: Scope;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** Returned once, at creation: the only time the plaintext token exists outside the caller. */
export interface CreatedToken {
  token: string;
  record: TokenRecord;
}

export interface CreatedOrg {
  org: OrgInfo;
  admin: CreatedToken;
}

export interface Identity {
  org: string;
  tokenId: string;
  tokenName: string;
  scope: Scope;
}

export interface Health {
  ok: true;
  component: string;
  version: string;
}

/** Default ports of a local control plane. */
export const DEFAULT_API_PORT = 47080;
export const DEFAULT_PROXY_PORT = 47000;
