import { z } from "zod";
import { ArtifactLayer, DIGEST_PATTERN } from "./deployments.ts";

/**
 * Artifact registry: the API that stores content-addressed layers in R2, and the
 * node-signed request scheme agents download them with.
 */

/** The sha256 of a lockfile, lowercase hex: what a deps layer is found by. */
export const LOCKFILE_HASH_PATTERN = DIGEST_PATTERN;

/** One stored layer, as `GET /api/v1/artifacts[/:digest]` describes it. */
export interface ArtifactInfo {
  digest: string;
  size: number;
  layer: ArtifactLayer;
  /** sha256 of the lockfile the deps layer was installed from; null for app layers. */
  lockfile: string | null;
  uploadedAt: string;
  /** The name of the API token that uploaded it. */
  uploadedBy: string;
}

/** `PUT /api/v1/artifacts/:digest`: `created` is false when the digest was already stored (the body was not read). */
export interface PutArtifactResponse {
  artifact: ArtifactInfo;
  created: boolean;
}

/** `GET /api/v1/artifacts`: one page; pass `cursor` back for the next while it is present. */
export interface ListArtifactsResponse {
  artifacts: ArtifactInfo[];
  cursor?: string;
}

export const PutArtifactQuery = z
  .object({
    layer: ArtifactLayer,
    lockfile: z.string().regex(LOCKFILE_HASH_PATTERN, "lockfile is the lockfile's sha256, 64 lowercase hex characters").optional(),
  })
  .strict()
  .refine((q) => q.layer === "deps" || q.lockfile === undefined, { message: "only a deps layer has a lockfile" });
export type PutArtifactQuery = z.infer<typeof PutArtifactQuery>;

export const LIST_ARTIFACTS_MAX = 1000;

export const ListArtifactsQuery = z
  .object({
    layer: ArtifactLayer.optional(),
    lockfile: z.string().regex(LOCKFILE_HASH_PATTERN, "lockfile is a sha256, 64 lowercase hex characters").optional(),
    /** A leading part of the digest (lowercase hex), e.g. to resolve a short digest. */
    prefix: z.string().regex(/^[0-9a-f]{1,64}$/, "prefix is lowercase hex").optional(),
    cursor: z.string().min(1).max(1024).optional(),
    limit: z.coerce.number().int().min(1).max(LIST_ARTIFACTS_MAX).default(100),
  })
  .strict();
export type ListArtifactsQuery = z.infer<typeof ListArtifactsQuery>;

/** The response header that repeats the digest of a downloaded layer. */
export const DIGEST_HEADER = "x-zectre-digest";

// ---- node-signed requests ----

/** Headers of a request an agent signs with its node key instead of carrying an API token. */
export const NODE_AUTH_HEADERS = {
  org: "x-zectre-org",
  node: "x-zectre-node",
  timestamp: "x-zectre-timestamp",
  signature: "x-zectre-signature",
} as const;

/** A signed request is accepted this far either side of the server's clock. */
export const NODE_REQUEST_MAX_SKEW_MS = 5 * 60_000;

/**
 * The bytes an agent signs for one HTTP request (Ed25519, base64url in
 * `x-zectre-signature`). `path` is the request path with its query string, so
 * a signature for one artifact cannot fetch another. `timestamp` is ms since epoch.
 */
export function nodeRequestSigningInput(org: string, nodeId: string, method: string, path: string, timestamp: number): Uint8Array {
  return new TextEncoder().encode(`zectre-node-request\n${org}\n${nodeId}\n${method.toUpperCase()}\n${path}\n${timestamp}`);
}

/** Where the agent downloads a layer from. */
export function agentArtifactPath(digest: string): string {
  return `/api/v1/agent/artifacts/${digest}`;
}
