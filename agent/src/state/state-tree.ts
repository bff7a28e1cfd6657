import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { STATE_FILE_PATTERN } from "../../../protocol/states.ts";
import type { StatesUpdate } from "../../../protocol/states.ts";
import type { Logger } from "../log.ts";
import { ensurePrivateDir, fsyncDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, readIfExists } from "./files.ts";

/**
 * `<data-dir>/states`: the state tree the control plane pushed last, which
 * `state.apply` reads (also offline). A new tree is written whole into
 * `states.<version>.tmp`, then swapped in with two renames (old aside, new in).
 * A crash leaves at most one of: a half-written tmp dir (ignored, deleted), the
 * old tree aside with no `states` (restored), or both trees (old deleted); the
 * next boot or update repairs it, so readers only ever see an old or new tree.
 */

export const STATES_DIR = "states";
/** The version of the tree, inside the tree (state files are never dotfiles). */
export const VERSION_FILE = ".version";
const OLD_DIR = `${STATES_DIR}.old`;
const TMP_PREFIX = `${STATES_DIR}.`;
const TMP_SUFFIX = ".tmp";

export interface StateTreeOptions {
  /** Replaces `renameSync` (tests inject failures to simulate a crash mid-swap). */
  readonly rename?: (from: string, to: string) => void;
}

export class StateTreeStore {
  /** The data dir the tree lives in. */
  readonly dataDir: string;
  /** `<data-dir>/states`, what `state.apply` reads. */
  readonly dir: string;
  readonly #rename: (from: string, to: string) => void;

  constructor(dataDir: string, options: StateTreeOptions = {}) {
    this.dataDir = resolve(dataDir);
    this.dir = join(this.dataDir, STATES_DIR);
    this.#rename = options.rename ?? renameSync;
  }

  /** Opens the store at boot and repairs what a crash mid-update left behind. */
  static open(dataDir: string, options: StateTreeOptions = {}): StateTreeStore {
    const store = new StateTreeStore(dataDir, options);
    store.recover();
    return store;
  }

  /** The version of the cached tree, or null when none was ever received. Read-only (safe for `status`). */
  version(): string | null {
    const text = readIfExists(join(this.dir, VERSION_FILE));
    return text === undefined ? null : text.trim() || null;
  }

  /**
   * Finishes or undoes an interrupted swap: puts the old tree back when the new
   * one never arrived, then deletes leftover tmp and old dirs. Returns what it removed.
   */
  recover(): string[] {
    if (!existsSync(this.dataDir)) return [];
    const old = join(this.dataDir, OLD_DIR);
    if (!existsSync(this.dir) && existsSync(old)) {
      this.#rename(old, this.dir);
      fsyncDir(this.dataDir);
    }
    const removed: string[] = [];
    for (const name of readdirSync(this.dataDir)) {
      if (name === OLD_DIR || (name.startsWith(TMP_PREFIX) && name.endsWith(TMP_SUFFIX))) {
        rmSync(join(this.dataDir, name), { recursive: true, force: true });
        removed.push(name);
      }
    }
    if (removed.length > 0) fsyncDir(this.dataDir);
    return removed;
  }

  /**
   * Replaces the tree with `update`'s files. Returns false (and touches nothing)
   * when the cached tree already has this version. Throws, having written
   * nothing, when a path would leave the tree.
   */
  apply(update: Pick<StatesUpdate, "version" | "files">): boolean {
    const targets = Object.keys(update.files).map((path) => [path, checkedPath(path)] as const);
    if (this.version() === update.version) return false;
    ensurePrivateDir(this.dataDir);
    this.recover();

    const tmp = join(this.dataDir, `${TMP_PREFIX}${dirSafe(update.version)}${TMP_SUFFIX}`);
    mkdirSync(tmp, { mode: PRIVATE_DIR_MODE });
    const dirs = new Set<string>([tmp]);
    for (const [path, parts] of targets) {
      const target = join(tmp, ...parts);
      // checkedPath already refused these; this is the last line of defence against a bug there.
      if (!target.startsWith(tmp + sep)) throw new Error(`state file path '${path}' leaves the tree`);
      for (let dir = dirname(target); dir !== tmp && !dirs.has(dir); dir = dirname(dir)) dirs.add(dir);
      mkdirSync(dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
      writeDurable(target, update.files[path] ?? "");
    }
    writeDurable(join(tmp, VERSION_FILE), `${update.version}\n`);
    for (const dir of dirs) fsyncDir(dir);
    fsyncDir(this.dataDir);

    const old = join(this.dataDir, OLD_DIR);
    const hadTree = existsSync(this.dir);
    try {
      if (hadTree) this.#rename(this.dir, old);
      this.#rename(tmp, this.dir);
    } catch (error) {
      // Put the old tree back now, so state.apply keeps working until the update is resent.
      try {
        this.recover();
      } catch {
        // The next update or boot retries the repair.
      }
      throw error;
    }
    fsyncDir(this.dataDir);
    if (hadTree) rmSync(old, { recursive: true, force: true });
    fsyncDir(this.dataDir);
    return true;
  }

  /** Relative paths of the cached tree's files, sorted (dotfiles left out). */
  files(): string[] {
    if (!existsSync(this.dir)) return [];
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.name.startsWith(".")) continue;
        const full = join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else found.push(relative(this.dir, full).split(sep).join("/"));
      }
    };
    walk(this.dir);
    return found.sort();
  }
}

/** The `states.update` action handler: writes the tree before returning, so the ack never precedes the data. */
export function statesUpdateHandler(store: StateTreeStore, log: Logger): (action: StatesUpdate) => void {
  return (action) => {
    const files = Object.keys(action.files).length;
    if (store.apply(action)) log.info("states updated", { version: action.version, files });
    else log.info("states unchanged", { version: action.version, files });
  };
}

/** Splits a state file path into segments, refusing anything that could leave the tree or clash with `.version`. */
function checkedPath(path: string): string[] {
  const parts = path.split("/");
  if (
    isAbsolute(path) ||
    path.includes("\\") ||
    path.includes("\0") ||
    !STATE_FILE_PATTERN.test(path) ||
    parts.some((part) => part === "" || part === "." || part === ".." || part.startsWith("."))
  ) {
    throw new Error(`refused state file path '${path}': state files are relative .yaml/.yml paths inside the tree`);
  }
  return parts;
}

/** Versions are content hashes, but a directory name must not depend on that. */
function dirSafe(version: string): string {
  return version.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64);
}

function writeDurable(path: string, text: string): void {
  const fd = openSync(path, "wx", PRIVATE_FILE_MODE);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
