import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipStream, type TarEntry, writeTar } from "../../../lib/tar.ts";
import type { ArtifactLayer } from "../../../protocol/deployments.ts";
import { IgnoreMatcher, parseIgnore } from "./ignore.ts";
import { walkTree, type WalkedEntry } from "./walk.ts";

/**
 * Packs an app directory into its layers: `app` (the code, honouring ignore files)
 * and, when dependencies are installed from a lockfile, `deps` (`node_modules`),
 * which a redeploy reuses for as long as the lockfile is unchanged.
 *
 * Each layer streams from disk through tar and gzip into a temp file, hashed on
 * the way: memory stays flat however big node_modules is, and the upload then
 * streams from that file with a known length.
 */

/** In order of preference; every one present goes into the lockfile hash. */
export const LOCKFILES = ["package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml"] as const;
export const DEPS_DIR = "node_modules";

export interface DepsSource {
  /** The lockfiles found at the root, in LOCKFILES order. */
  lockfiles: string[];
  /** sha256 (hex) of the lockfile's bytes; with several lockfiles, of `name sha256\n` lines for each. */
  lockfileHash: string;
}

export interface PackedLayer {
  layer: ArtifactLayer;
  /** The `.tgz` in a temp directory; `dispose()` removes it. */
  path: string;
  digest: string;
  size: number;
  /** Files and symlinks packed (directories not counted). */
  files: number;
  /** The lockfile hash a deps layer was packed for; null for the app layer. */
  lockfile: string | null;
  dispose(): Promise<void>;
}

/** Bytes of file content read so far, of the total to read. */
export type PackProgress = (done: number, total: number) => void;

export interface PackOptions {
  progress?: PackProgress;
}

function sha256(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** A deps layer exists when a lockfile and an installed `node_modules` sit at the root. */
export async function findDeps(dir: string): Promise<DepsSource | null> {
  if (!(await isDirectory(join(dir, DEPS_DIR)))) return null;
  const found: Array<{ name: string; hash: string }> = [];
  for (const name of LOCKFILES) {
    try {
      found.push({ name, hash: sha256(await readFile(join(dir, name))) });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  const first = found[0];
  if (!first) return null;
  const lockfileHash = found.length === 1 ? first.hash : sha256(found.map((f) => `${f.name} ${f.hash}\n`).join(""));
  return { lockfiles: found.map((f) => f.name), lockfileHash };
}

async function readIgnoreFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
}

/** The root's rules: `.gitignore` files join on the way down; `.zectreignore` outranks them all. */
async function rootMatcher(dir: string): Promise<IgnoreMatcher> {
  return new IgnoreMatcher([], { base: "", rules: parseIgnore(await readIgnoreFile(join(dir, ".zectreignore"))) });
}

function toTarEntries(walked: readonly WalkedEntry[], onRead: (bytes: number) => void): TarEntry[] {
  return walked.map((entry) => {
    const tar: TarEntry = { path: entry.path, type: entry.type, mode: entry.mode, size: entry.size };
    if (entry.linkTarget !== undefined) tar.linkTarget = entry.linkTarget;
    if (entry.type === "file") {
      tar.content = async function* () {
        for await (const chunk of createReadStream(entry.absolute)) {
          onRead((chunk as Buffer).byteLength);
          yield chunk as Buffer;
        }
      };
    }
    return tar;
  });
}

async function writeLayer(layer: ArtifactLayer, walked: readonly WalkedEntry[], lockfile: string | null, options: PackOptions): Promise<PackedLayer> {
  const total = walked.reduce((sum, entry) => sum + entry.size, 0);
  let done = 0;
  options.progress?.(0, total);
  const onRead = (bytes: number) => {
    done += bytes;
    options.progress?.(done, total);
  };
  const dir = await mkdtemp(join(tmpdir(), "zectre-pack-"));
  const dispose = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, `${layer}.tgz`);
  try {
    const hash = createHash("sha256");
    let size = 0;
    const file = await open(path, "wx", 0o600);
    try {
      for await (const chunk of gzipStream(writeTar(toTarEntries(walked, onRead)))) {
        hash.update(chunk);
        size += chunk.byteLength;
        await file.write(chunk);
      }
    } finally {
      await file.close();
    }
    const files = walked.filter((entry) => entry.type !== "directory").length;
    return { layer, path, digest: hash.digest("hex"), size, files, lockfile, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** The app layer: every file the ignore rules keep, without the deps layer's `node_modules` when there is one. */
export async function packAppLayer(dir: string, deps: DepsSource | null, options: PackOptions = {}): Promise<PackedLayer> {
  const skip = deps ? (path: string) => path === DEPS_DIR : undefined;
  const walked = await walkTree(dir, { ignore: await rootMatcher(dir), ...(skip ? { skip } : {}) });
  return writeLayer("app", walked, null, options);
}

/** The deps layer: all of `node_modules`, whatever `.gitignore` says (it nearly always ignores it). */
export async function packDepsLayer(dir: string, deps: DepsSource, options: PackOptions = {}): Promise<PackedLayer> {
  const root = join(dir, DEPS_DIR);
  const walked = await walkTree(root, { ignore: null, prefix: DEPS_DIR });
  const self: WalkedEntry = { path: DEPS_DIR, type: "directory", mode: 0o755, size: 0, absolute: root };
  return writeLayer("deps", [self, ...walked], deps.lockfileHash, options);
}

/** Both layers at once (the deps layer only when there is one). */
export async function packApp(dir: string, options: PackOptions = {}): Promise<{ app: PackedLayer; deps: PackedLayer | null }> {
  const deps = await findDeps(dir);
  const app = await packAppLayer(dir, deps, options);
  if (!deps) return { app, deps: null };
  try {
    return { app, deps: await packDepsLayer(dir, deps, options) };
  } catch (error) {
    await app.dispose();
    throw error;
  }
}
