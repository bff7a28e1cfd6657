import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { isAbsolute, join, posix } from "node:path";
import { CliError } from "../errors.ts";
import { ALWAYS_EXCLUDED, type IgnoreMatcher, parseIgnore } from "./ignore.ts";

/** One thing to pack, found on disk: what the tar writer needs plus where to read it from. */
export interface WalkedEntry {
  /** Relative to the layer's root, `/`-separated. */
  path: string;
  type: "file" | "directory" | "symlink";
  /** 0755 when the owner may execute a file, else 0644; directories 0755; symlinks 0777. */
  mode: number;
  size: number;
  linkTarget?: string;
  absolute: string;
}

export interface WalkOptions {
  /** Null packs everything (node_modules); otherwise `.gitignore` files found on the way are added to it. */
  ignore: IgnoreMatcher | null;
  /** Paths left out on top of the ignore rules (e.g. the deps layer's paths from the app layer). */
  skip?: (path: string) => boolean;
  /** Prepended to every path, e.g. `node_modules`. */
  prefix?: string;
}

function modeOf(type: WalkedEntry["type"], statMode: number): number {
  if (type === "directory") return 0o755;
  if (type === "symlink") return 0o777;
  return statMode & 0o100 ? 0o755 : 0o644;
}

/**
 * The agent refuses links that leave the unpacked tree, so they are refused here
 * first, where the person deploying can still fix them.
 */
function checkLinkTarget(path: string, target: string): void {
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (isAbsolute(target) || resolved === ".." || resolved.startsWith("../")) {
    throw new CliError(`${path} is a symlink to '${target}', outside the app directory; agents refuse such links`);
  }
}

async function nestedIgnore(dir: string, base: string, ignore: IgnoreMatcher): Promise<IgnoreMatcher> {
  try {
    return ignore.withNested({ base, rules: parseIgnore(await readFile(join(dir, ".gitignore"), "utf8")) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return ignore;
    throw error;
  }
}

/**
 * Every entry under `root` that is not ignored, directories included (so empty
 * ones survive), in path order. An ignored directory is not entered, so, as in
 * git, nothing inside it can be re-included. Sockets, FIFOs and devices are skipped.
 */
export async function walkTree(root: string, options: WalkOptions): Promise<WalkedEntry[]> {
  const entries: WalkedEntry[] = [];
  const prefix = options.prefix ?? "";
  const visit = async (dir: string, relative: string, ignore: IgnoreMatcher | null): Promise<void> => {
    const here = ignore ? await nestedIgnore(dir, relative, ignore) : null;
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const path = relative === "" ? name : `${relative}/${name}`;
      const absolute = join(dir, name);
      const stat = await lstat(absolute);
      const type = stat.isDirectory() ? "directory" : stat.isSymbolicLink() ? "symlink" : stat.isFile() ? "file" : null;
      if (type === null || options.skip?.(path)) continue;
      if (here ? here.ignores(path, type === "directory") : type === "directory" && ALWAYS_EXCLUDED.includes(name)) continue;
      const packedPath = prefix === "" ? path : `${prefix}/${path}`;
      const entry: WalkedEntry = { path: packedPath, type, mode: modeOf(type, stat.mode), size: type === "file" ? stat.size : 0, absolute };
      if (type === "symlink") {
        entry.linkTarget = await readlink(absolute);
        checkLinkTarget(packedPath, entry.linkTarget);
      }
      entries.push(entry);
      if (type === "directory") await visit(absolute, path, here);
    }
  };
  await visit(root, "", options.ignore);
  return entries;
}
