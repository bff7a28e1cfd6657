import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, createReadStream, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, writeSync } from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import { gunzipStream, readTar, TarError, type TarHeader } from "../../../lib/tar.ts";
import { networkReason } from "../../../lib/network-errors.ts";
import { agentArtifactPath, DIGEST_HEADER, NODE_AUTH_HEADERS, nodeRequestSigningInput } from "../../../protocol/artifacts.ts";
import { toBase64Url } from "../../../protocol/base64url.ts";
import { type ArtifactRef, DIGEST_PATTERN } from "../../../protocol/deployments.ts";
import { isErrorBody } from "../../../protocol/errors.ts";
import type { Signer } from "../keys.ts";
import { ensurePrivateDir, fsyncDir, PRIVATE_DIR_MODE } from "../state/files.ts";

/**
 * The agent's artifact cache: downloads layers with the node's own signature,
 * verifies size and sha256 before anything uses them, and unpacks them safely.
 *
 * A cached `<digest>.tgz` is trusted by its name (and size): a file only ever
 * gets that name by a rename after its bytes hashed to it, and the cache dir is
 * private to the agent. Re-hashing up to 100 MB on every task start would buy
 * nothing against an attacker who can already write there.
 */

export type ArtifactErrorCode = "digest_mismatch" | "not_found" | "unauthorized" | "network" | "bad_archive" | "unsafe_entry" | "exists";

export class ArtifactError extends Error {
  override readonly name: string = "ArtifactError";
  readonly code: ArtifactErrorCode;

  constructor(code: ArtifactErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface ArtifactStoreOptions {
  cacheDir: string;
  /** The control plane's URL (the identity's `url`). */
  baseUrl: string;
  org: string;
  nodeId: string;
  signer: Signer;
  fetch?: typeof fetch;
}

/** A download that moves no bytes for this long is abandoned. */
const DOWNLOAD_STALL_MS = 60_000;

/** The headers of a node-signed request (see protocol/artifacts.ts); `path` includes any query string. */
export function signedRequestHeaders(signer: Signer, org: string, nodeId: string, method: string, path: string, timestamp: number): Record<string, string> {
  const signature = toBase64Url(signer(nodeRequestSigningInput(org, nodeId, method, path, timestamp)));
  return {
    [NODE_AUTH_HEADERS.org]: org,
    [NODE_AUTH_HEADERS.node]: nodeId,
    [NODE_AUTH_HEADERS.timestamp]: String(timestamp),
    [NODE_AUTH_HEADERS.signature]: signature,
  };
}

function tempName(dir: string, name: string): string {
  return join(dir, `.${name}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

async function failureOf(response: Response, digest: string): Promise<ArtifactError> {
  let message = `the server answered HTTP ${response.status}`;
  try {
    const body: unknown = await response.json();
    if (isErrorBody(body)) message = body.error.message;
  } catch {
    // The status says enough.
  }
  if (response.status === 404) return new ArtifactError("not_found", `artifact ${digest} not found: ${message}`);
  if (response.status === 401 || response.status === 403) return new ArtifactError("unauthorized", `downloading artifact ${digest} was refused: ${message}`);
  return new ArtifactError("network", `downloading artifact ${digest} failed: ${message}`);
}

export class ArtifactStore {
  readonly #options: ArtifactStoreOptions;
  readonly #fetch: typeof fetch;
  /** One download per digest at a time, however many tasks want it. */
  readonly #downloads = new Map<string, Promise<string>>();

  constructor(options: ArtifactStoreOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
  }

  cachedPath(digest: string): string {
    return join(this.#options.cacheDir, `${digest}.tgz`);
  }

  /** The path of a verified copy of the layer, downloading it first when it is not cached. */
  ensure(ref: ArtifactRef): Promise<string> {
    if (!DIGEST_PATTERN.test(ref.digest)) return Promise.reject(new ArtifactError("bad_archive", `'${ref.digest}' is not a sha256 digest`));
    const path = this.cachedPath(ref.digest);
    if (sizeOf(path) === ref.size) return Promise.resolve(path);
    let download = this.#downloads.get(ref.digest);
    if (!download) {
      download = this.#download(ref, path).finally(() => this.#downloads.delete(ref.digest));
      this.#downloads.set(ref.digest, download);
    }
    return download;
  }

  async #download(ref: ArtifactRef, path: string): Promise<string> {
    ensurePrivateDir(this.#options.cacheDir);
    const { baseUrl, org, nodeId, signer } = this.#options;
    const urlPath = agentArtifactPath(ref.digest);
    const stall = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => stall.abort(new Error(`no bytes for ${DOWNLOAD_STALL_MS / 1000}s`)), DOWNLOAD_STALL_MS);
    };
    watch();
    const temp = tempName(this.#options.cacheDir, basename(path));
    try {
      const headers = signedRequestHeaders(signer, org, nodeId, "GET", urlPath, Date.now());
      const response = await this.#fetch(`${baseUrl.replace(/\/+$/, "")}${urlPath}`, { headers, signal: stall.signal });
      if (!response.ok || response.body === null) throw await failureOf(response, ref.digest);
      const declared = response.headers.get("content-length");
      if (declared !== null && Number(declared) !== ref.size) {
        await response.body.cancel();
        throw new ArtifactError("digest_mismatch", `artifact ${ref.digest} is ${declared} bytes on the server; the deployment says ${ref.size}`);
      }
      if (response.headers.get(DIGEST_HEADER) !== ref.digest) {
        await response.body.cancel();
        throw new ArtifactError("digest_mismatch", `the server sent a different artifact than ${ref.digest}`);
      }
      await writeVerified(response.body, temp, ref, watch);
      renameSync(temp, path);
      fsyncDir(this.#options.cacheDir);
      return path;
    } catch (error) {
      rmSync(temp, { force: true });
      if (error instanceof ArtifactError) throw error;
      const reason = stall.signal.aborted ? (stall.signal.reason as Error).message : networkReason(error, DOWNLOAD_STALL_MS);
      throw new ArtifactError("network", `downloading artifact ${ref.digest} from ${new URL(baseUrl).origin} failed: ${reason}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Unpacks the layers (app, then deps) into `destDir`, which must not exist or be
   * empty. Everything goes into a temp directory beside it first, renamed into place
   * only when every entry was written: a failure leaves `destDir` as it was.
   */
  async unpack(refs: ArtifactRef[], destDir: string): Promise<void> {
    const ordered = [...refs].sort((a, b) => (a.layer === b.layer ? 0 : a.layer === "app" ? -1 : 1));
    const archives: string[] = [];
    for (const ref of ordered) archives.push(await this.ensure(ref));
    if (!isAbsentOrEmptyDir(destDir)) throw new ArtifactError("exists", `${destDir} already has contents; unpack needs a new or empty directory`);

    const parent = dirname(destDir);
    mkdirSync(parent, { recursive: true });
    const staging = join(parent, `.${basename(destDir)}.unpack-${randomBytes(4).toString("hex")}`);
    mkdirSync(staging, { mode: PRIVATE_DIR_MODE });
    try {
      const writer = new SafeWriter(staging);
      for (const [i, archive] of archives.entries()) await writer.extract(archive, (ordered[i] as ArtifactRef).digest);
      if (statOrNull(destDir)) rmdirSync(destDir);
      renameSync(staging, destDir);
      fsyncDir(parent);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      if (error instanceof TarError) throw new ArtifactError("bad_archive", error.message);
      throw error;
    }
  }
}

function statOrNull(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function sizeOf(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null;
  }
}

function isAbsentOrEmptyDir(path: string): boolean {
  const stat = statOrNull(path);
  return stat === null || (stat.isDirectory() && readdirSync(path).length === 0);
}

/** Streams the body into `temp` while hashing; the bytes are kept only if size and sha256 both match. */
async function writeVerified(body: ReadableStream<Uint8Array>, temp: string, ref: ArtifactRef, onChunk: () => void): Promise<void> {
  const hash = createHash("sha256");
  let size = 0;
  const fd = openSync(temp, "wx", 0o600);
  try {
    for await (const chunk of body) {
      onChunk();
      size += chunk.byteLength;
      if (size > ref.size) break;
      hash.update(chunk);
      writeSync(fd, chunk);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (size !== ref.size) throw new ArtifactError("digest_mismatch", `artifact ${ref.digest} arrived with ${size > ref.size ? "more" : "fewer"} than its ${ref.size} bytes`);
  const actual = hash.digest("hex");
  if (actual !== ref.digest) throw new ArtifactError("digest_mismatch", `artifact ${ref.digest} arrived with sha256 ${actual}; it was not used`);
}

/**
 * Writes tar entries under `root` and refuses anything that could reach outside
 * it: absolute paths, `..`, links that leave the tree, paths through a link the
 * archive made, hard links and device or FIFO nodes.
 */
class SafeWriter {
  readonly #root: string;
  readonly #links = new Set<string>();

  constructor(root: string) {
    this.#root = root;
  }

  async extract(archive: string, digest: string): Promise<void> {
    let fd: number | null = null;
    try {
      for await (const event of readTar(gunzipStream(createReadStream(archive)))) {
        if (event.kind === "entry") fd = this.#begin(event.header, digest);
        else if (event.kind === "data" && fd !== null) writeSync(fd, event.chunk);
        else if (event.kind === "entry-end" && fd !== null) {
          closeSync(fd);
          fd = null;
        }
      }
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  /** Creates the entry; for a file, returns the descriptor its data goes to. */
  #begin(header: TarHeader, digest: string): number | null {
    const path = this.#relative(header, digest);
    if (path === null) return null;
    const target = join(this.#root, path);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    switch (header.type) {
      case "directory":
        if (!statOrNull(target)?.isDirectory()) mkdirSync(target, { mode: 0o755 });
        return null;
      case "symlink":
        this.#checkLink(path, header.linkTarget, digest);
        if (statOrNull(target)) throw new ArtifactError("unsafe_entry", `artifact ${digest}: ${path} appears twice`);
        symlinkSync(header.linkTarget, target);
        this.#links.add(path);
        return null;
      case "file":
        // O_NOFOLLOW: even a link this writer missed cannot redirect the write.
        return openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, header.mode & 0o755);
      default:
        throw new ArtifactError("unsafe_entry", `artifact ${digest}: ${path} is a ${header.type}; layers hold only files, directories and symlinks`);
    }
  }

  /** The normalized relative path, or null for the root itself. */
  #relative(header: TarHeader, digest: string): string | null {
    const raw = header.path;
    if (raw.startsWith("/") || raw.includes("\0")) throw new ArtifactError("unsafe_entry", `artifact ${digest}: absolute path '${raw}'`);
    if (raw.split("/").includes("..")) throw new ArtifactError("unsafe_entry", `artifact ${digest}: path '${raw}' climbs out with '..'`);
    const path = posix.normalize(raw).replace(/\/+$/, "");
    if (path === "." || path === "") return null;
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (this.#links.has(parts.slice(0, i).join("/"))) {
        throw new ArtifactError("unsafe_entry", `artifact ${digest}: '${path}' goes through the symlink '${parts.slice(0, i).join("/")}'`);
      }
    }
    if (this.#links.has(path)) throw new ArtifactError("unsafe_entry", `artifact ${digest}: ${path} would replace a symlink`);
    return path;
  }

  #checkLink(path: string, target: string, digest: string): void {
    const resolved = posix.normalize(posix.join(posix.dirname(path), target));
    if (target.startsWith("/") || target === "" || resolved === ".." || resolved.startsWith("../")) {
      throw new ArtifactError("unsafe_entry", `artifact ${digest}: symlink ${path} -> ${target} points outside the app directory`);
    }
  }
}
