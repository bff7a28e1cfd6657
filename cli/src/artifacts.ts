import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { ArtifactInfo, ListArtifactsResponse, PutArtifactResponse } from "../../protocol/artifacts.ts";
import type { ArtifactLayer, ArtifactRef } from "../../protocol/deployments.ts";
import type { ApiClient } from "./client.ts";
import { CliError } from "./errors.ts";
import { type DepsSource, findDeps, packAppLayer, packDepsLayer, type PackedLayer } from "./pack/pack.ts";

/**
 * The artifact step of a deploy: pack the directory into layers, and upload only
 * what the server does not have. A deps layer whose lockfile is unchanged is
 * found by the lockfile's hash before node_modules is even read.
 */

export interface LayerOutcome {
  layer: ArtifactLayer;
  digest: string;
  size: number;
  /** Files and symlinks in the layer; 0 for a deps layer reused by lockfile, which is never packed. */
  files: number;
  uploaded: boolean;
  reusedBy: "digest" | "lockfile" | null;
}

export interface PreparedArtifacts {
  refs: ArtifactRef[];
  layers: LayerOutcome[];
}

export type ProgressSink = (event: { layer: ArtifactLayer; phase: "pack" | "upload"; done: number; total: number }) => void;

/** An upload that moves no bytes for this long is abandoned (a whole upload may take far longer). */
const UPLOAD_STALL_MS = 60_000;

const ARTIFACTS = "/api/v1/artifacts";

export interface ListFilter {
  layer?: ArtifactLayer | undefined;
  lockfile?: string | undefined;
  prefix?: string | undefined;
}

/** One page of `GET /api/v1/artifacts`. */
export function listArtifacts(client: ApiClient, filter: ListFilter, cursor?: string): Promise<ListArtifactsResponse> {
  const query = new URLSearchParams({ limit: "1000" });
  if (filter.layer !== undefined) query.set("layer", filter.layer);
  if (filter.lockfile !== undefined) query.set("lockfile", filter.lockfile);
  if (filter.prefix !== undefined) query.set("prefix", filter.prefix);
  if (cursor !== undefined) query.set("cursor", cursor);
  return client.request("GET", `${ARTIFACTS}?${query}`);
}

/** Every page, following the cursor. */
export async function listAllArtifacts(client: ApiClient, filter: ListFilter): Promise<ArtifactInfo[]> {
  const all: ArtifactInfo[] = [];
  let cursor: string | undefined;
  do {
    const page = await listArtifacts(client, filter, cursor);
    all.push(...page.artifacts);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return all;
}

export function getArtifact(client: ApiClient, digest: string): Promise<{ artifact: ArtifactInfo }> {
  return client.request("GET", `${ARTIFACTS}/${digest}`);
}

/** `HEAD`: true when the org already stores this digest. */
export async function artifactStored(client: ApiClient, digest: string): Promise<boolean> {
  const path = `${ARTIFACTS}/${digest}`;
  const response = await client.send("HEAD", path);
  if (response.status === 200) return true;
  if (response.status === 404) return false;
  throw await client.errorOf("HEAD", path, response);
}

/** The file as a web stream that reports each chunk as fetch takes it, so progress follows the network. */
function fileBody(path: string, onChunk: (sent: number) => void): ReadableStream<Uint8Array> {
  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  const chunks = file[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) return controller.close();
      sent += next.value.byteLength;
      onChunk(sent);
      controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
    },
    cancel() {
      file.destroy();
    },
  });
}

/** `PUT` with the layer streamed from its temp file; the server verifies the digest. */
export async function uploadLayer(client: ApiClient, packed: PackedLayer, onSent: (sent: number) => void): Promise<PutArtifactResponse> {
  const query = new URLSearchParams({ layer: packed.layer });
  if (packed.lockfile !== null) query.set("lockfile", packed.lockfile);
  const path = `${ARTIFACTS}/${packed.digest}?${query}`;
  const stall = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const watch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(new Error(`the ${packed.layer} layer upload stalled: no progress for ${UPLOAD_STALL_MS / 1000}s`)), UPLOAD_STALL_MS);
  };
  watch();
  try {
    const body = fileBody(packed.path, (sent) => {
      watch();
      onSent(sent);
    });
    const headers = { "content-type": "application/gzip", "content-length": String(packed.size) };
    const response = await client.send("PUT", path, { body, headers, signal: stall.signal });
    if (!response.ok) throw await client.errorOf("PUT", path, response);
    return (await response.json()) as PutArtifactResponse;
  } finally {
    clearTimeout(timer);
  }
}

/** Uploads a packed layer unless its digest is already stored. */
async function publish(client: ApiClient, packed: PackedLayer, progress: ProgressSink): Promise<LayerOutcome> {
  const outcome = { layer: packed.layer, digest: packed.digest, size: packed.size, files: packed.files };
  if (await artifactStored(client, packed.digest)) return { ...outcome, uploaded: false, reusedBy: "digest" };
  const report = (done: number) => progress({ layer: packed.layer, phase: "upload", done, total: packed.size });
  report(0);
  const result = await uploadLayer(client, packed, report);
  report(packed.size);
  // Someone else may have stored the same bytes between the HEAD and the PUT.
  return { ...outcome, uploaded: result.created, reusedBy: result.created ? null : "digest" };
}

async function withPacked(pack: Promise<PackedLayer>, use: (packed: PackedLayer) => Promise<LayerOutcome>): Promise<LayerOutcome> {
  const packed = await pack;
  try {
    return await use(packed);
  } finally {
    await packed.dispose();
  }
}

/** The newest deps layer stored for this lockfile, if any. */
async function depsForLockfile(client: ApiClient, lockfile: string): Promise<ArtifactInfo | null> {
  const found = await listAllArtifacts(client, { layer: "deps", lockfile });
  return found.reduce<ArtifactInfo | null>((newest, info) => (newest === null || info.uploadedAt > newest.uploadedAt ? info : newest), null);
}

async function prepareDeps(dir: string, deps: DepsSource, client: ApiClient, progress: ProgressSink): Promise<LayerOutcome> {
  const stored = await depsForLockfile(client, deps.lockfileHash);
  if (stored) return { layer: "deps", digest: stored.digest, size: stored.size, files: 0, uploaded: false, reusedBy: "lockfile" };
  const packing = packDepsLayer(dir, deps, { progress: (done, total) => progress({ layer: "deps", phase: "pack", done, total }) });
  return withPacked(packing, (packed) => publish(client, packed, progress));
}

/**
 * Packs `dir` and makes sure the server holds every layer: the refs a deployment
 * names, and per layer whether it was uploaded or reused (and why).
 */
export async function prepareArtifacts(dir: string, client: ApiClient, progress: ProgressSink): Promise<PreparedArtifacts> {
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) throw new CliError(`${dir} is not a directory`);
  const deps = await findDeps(dir);
  const depsOutcome = deps ? await prepareDeps(dir, deps, client, progress) : null;
  const packing = packAppLayer(dir, deps, { progress: (done, total) => progress({ layer: "app", phase: "pack", done, total }) });
  const appOutcome = await withPacked(packing, (packed) => publish(client, packed, progress));
  const layers = depsOutcome ? [appOutcome, depsOutcome] : [appOutcome];
  return { refs: layers.map(({ layer, digest, size }) => ({ layer, digest, size })), layers };
}
