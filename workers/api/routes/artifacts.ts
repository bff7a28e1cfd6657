import { Hono } from "hono";
import type { z } from "zod";
import {
  type ArtifactInfo,
  DIGEST_HEADER,
  ListArtifactsQuery,
  type ListArtifactsResponse,
  PutArtifactQuery,
  type PutArtifactResponse,
} from "../../../protocol/artifacts.ts";
import { type ArtifactLayer, DIGEST_PATTERN } from "../../../protocol/deployments.ts";
import { authenticate, requireScope } from "../auth.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { nodeAuthenticate } from "../node-auth.ts";
import { orgStub } from "../../../durable-objects/env.ts";
import { log } from "../../lib/log.ts";

/**
 * The artifact registry: content-addressed layers in R2 under `<org>/sha256/<digest>`.
 *
 * Uploads are verified by R2 itself: the put carries the expected sha256, and R2
 * refuses the object when the bytes hash differently (local R2 does the same; a
 * workerd test pins that). An R2 put is all-or-nothing, so a refused or broken
 * upload never leaves an object under the digest, and no temp key or copy is needed.
 */

export const DEFAULT_ARTIFACT_MAX_BYTES = 100 * 1024 * 1024;

/** The largest layer accepted: `ARTIFACT_MAX_BYTES`, or 100 MB when unset or not a positive number. */
export function artifactMaxBytes(env: Pick<ApiEnv, "ARTIFACT_MAX_BYTES">): number {
  const value = Number(env.ARTIFACT_MAX_BYTES ?? "");
  return Number.isSafeInteger(value) && value > 0 ? value : DEFAULT_ARTIFACT_MAX_BYTES;
}

export function artifactKey(org: string, digest: string): string {
  return `${org}/sha256/${digest}`;
}

/** Zero-byte markers `<org>/deps-lockfile/<lockfile>/<digest>`: finding a deps layer by lockfile is one list, not a scan. */
function lockfilePrefix(org: string, lockfile: string): string {
  return `${org}/deps-lockfile/${lockfile}/`;
}

function toInfo(object: R2Object): ArtifactInfo {
  const meta = object.customMetadata ?? {};
  return {
    digest: object.key.slice(object.key.lastIndexOf("/") + 1),
    size: object.size,
    layer: meta.layer === "deps" ? "deps" : "app",
    lockfile: meta.lockfile ?? null,
    uploadedAt: meta.uploadedAt ?? object.uploaded.toISOString(),
    uploadedBy: meta.uploadedBy ?? "",
  };
}

/** An invalid digest cannot name an artifact: the same answer as an unknown one. */
function digestOr404(raw: string): string {
  if (!DIGEST_PATTERN.test(raw)) throw new ApiError("not_found", `artifact ${raw} not found`);
  return raw;
}

function parseQuery<S extends z.ZodType>(schema: S, query: Record<string, string>): z.infer<S> {
  const parsed = schema.safeParse(query);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    throw new ApiError("bad_request", `invalid query: ${where}${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** Content-Length is required so the limit is enforced before a byte is read and R2 gets a known-length stream. */
function declaredLength(header: string | undefined, maxBytes: number): number {
  if (header === undefined || !/^\d{1,16}$/.test(header)) {
    throw new ApiError("length_required", "an artifact upload needs a Content-Length header");
  }
  const length = Number(header);
  if (length > maxBytes) throw new ApiError("payload_too_large", `the layer is ${length} bytes; this server accepts at most ${maxBytes}`);
  return length;
}

function isChecksumRejection(error: unknown): boolean {
  return error instanceof Error && /sha-?256|checksum|\(10037\)/i.test(error.message);
}

/**
 * Streams the body into R2 through a FixedLengthStream: R2 needs a known length,
 * and the stream errors if the client sends fewer or more bytes than it declared.
 * The bytes are counted on the way so a cut-short upload is told from a bad digest.
 */
async function storeStream(
  bucket: R2Bucket,
  key: string,
  body: ReadableStream<Uint8Array> | null,
  length: number,
  options: R2PutOptions,
): Promise<void> {
  let seen = 0;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  const fixed = new FixedLengthStream(length);
  // Its failure shows up as the put's failure; the count below says which it was.
  const piping = (body ?? new Blob([]).stream()).pipeThrough(counter).pipeTo(fixed.writable).catch(() => undefined);
  try {
    await bucket.put(key, fixed.readable, options);
  } catch (error) {
    await piping;
    if (isChecksumRejection(error)) throw new ApiError("digest_mismatch", "the uploaded bytes do not hash to the digest in the URL");
    if (seen !== length) throw new ApiError("bad_request", `the upload sent ${seen < length ? "fewer" : "more"} bytes than its Content-Length (${length})`);
    throw error;
  }
  await piping;
}

async function listByLockfile(bucket: R2Bucket, org: string, query: ListArtifactsQuery): Promise<ListArtifactsResponse> {
  const lockfile = query.lockfile as string;
  const listed = await bucket.list({ prefix: lockfilePrefix(org, lockfile), limit: query.limit, ...(query.cursor ? { cursor: query.cursor } : {}) });
  const artifacts: ArtifactInfo[] = [];
  for (const marker of listed.objects) {
    const digest = marker.key.slice(marker.key.lastIndexOf("/") + 1);
    if (query.prefix !== undefined && !digest.startsWith(query.prefix)) continue;
    const object = await bucket.head(artifactKey(org, digest));
    if (object && (query.layer === undefined || toInfo(object).layer === query.layer)) artifacts.push(toInfo(object));
  }
  return listed.truncated ? { artifacts, cursor: listed.cursor } : { artifacts };
}

async function listAll(bucket: R2Bucket, org: string, query: ListArtifactsQuery): Promise<ListArtifactsResponse> {
  const listed = await bucket.list({
    prefix: artifactKey(org, query.prefix ?? ""),
    limit: query.limit,
    include: ["customMetadata"],
    ...(query.cursor ? { cursor: query.cursor } : {}),
  });
  // A page filtered by layer may hold fewer than `limit` artifacts; the cursor still says whether more exist.
  const artifacts = listed.objects.map(toInfo).filter((info) => query.layer === undefined || info.layer === query.layer);
  return listed.truncated ? { artifacts, cursor: listed.cursor } : { artifacts };
}

function putOptions(digest: string, layer: ArtifactLayer, lockfile: string | undefined, uploadedBy: string): R2PutOptions {
  const customMetadata: Record<string, string> = { layer, uploadedBy, uploadedAt: new Date().toISOString() };
  if (lockfile !== undefined) customMetadata.lockfile = lockfile;
  return { sha256: digest, customMetadata, httpMetadata: { contentType: "application/gzip" } };
}

/** One RPC per new layer (uploads are rare); the layer is stored either way, so a failure here is only logged. */
async function countStored(env: ApiEnv, org: string, info: ArtifactInfo): Promise<void> {
  try {
    await orgStub(env, org).recordMetrics({
      counters: [
        { name: "zectre_artifact_stored_bytes_total", labels: { layer: info.layer }, value: info.size },
        { name: "zectre_artifacts_stored_total", labels: { layer: info.layer }, value: 1 },
      ],
      histograms: [],
    });
  } catch (error) {
    log("warn", "metrics", "could not count a stored artifact", { org, digest: info.digest, error: String(error) });
  }
}

export const artifactRoutes = new Hono<ApiContext>()
  .use("/artifacts", authenticate())
  .use("/artifacts/*", authenticate())
  .get("/artifacts", async (c) => {
    const query = parseQuery(ListArtifactsQuery, c.req.query());
    const org = c.get("identity").org;
    const page = query.lockfile !== undefined ? await listByLockfile(c.env.ARTIFACTS, org, query) : await listAll(c.env.ARTIFACTS, org, query);
    return c.json(page satisfies ListArtifactsResponse);
  })
  // Hono answers HEAD with this handler too, minus the body: the cheap "is it stored?" check.
  .get("/artifacts/:digest", async (c) => {
    const digest = digestOr404(c.req.param("digest"));
    const object = await c.env.ARTIFACTS.head(artifactKey(c.get("identity").org, digest));
    if (!object) throw new ApiError("not_found", `artifact ${digest} not found`);
    return c.json({ artifact: toInfo(object) });
  })
  .put("/artifacts/:digest", requireScope("operate"), async (c) => {
    const digest = c.req.param("digest");
    if (!DIGEST_PATTERN.test(digest)) throw new ApiError("bad_request", "the digest in the URL must be a sha256: 64 lowercase hex characters");
    const query = parseQuery(PutArtifactQuery, c.req.query());
    const length = declaredLength(c.req.header("content-length"), artifactMaxBytes(c.env));
    const identity = c.get("identity");
    const key = artifactKey(identity.org, digest);
    const markLockfile = async () => {
      if (query.lockfile !== undefined) await c.env.ARTIFACTS.put(`${lockfilePrefix(identity.org, query.lockfile)}${digest}`, "");
    };
    const existing = await c.env.ARTIFACTS.head(key);
    if (existing) {
      if (toInfo(existing).layer === "deps") await markLockfile();
      return c.json({ artifact: toInfo(existing), created: false } satisfies PutArtifactResponse, 200);
    }

    await storeStream(c.env.ARTIFACTS, key, c.req.raw.body, length, putOptions(digest, query.layer, query.lockfile, identity.tokenName));
    await markLockfile();
    const stored = await c.env.ARTIFACTS.head(key);
    if (!stored) throw new Error(`artifact ${key} vanished right after it was stored`);
    await countStored(c.env, identity.org, toInfo(stored));
    return c.json({ artifact: toInfo(stored), created: true } satisfies PutArtifactResponse, 201);
  })
  .get("/agent/artifacts/:digest", nodeAuthenticate(), async (c) => {
    const digest = digestOr404(c.req.param("digest"));
    const object = await c.env.ARTIFACTS.get(artifactKey(c.get("node").org, digest));
    if (!object) throw new ApiError("not_found", `artifact ${digest} not found`);
    return new Response(object.body, {
      headers: {
        "content-type": "application/gzip",
        "content-length": String(object.size),
        [DIGEST_HEADER]: digest,
        // Content-addressed, so it never changes; private because it took a node's signature to get.
        "cache-control": "private, max-age=31536000, immutable",
      },
    });
  });
