import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * The durability primitives every file under the data dir is written with. The
 * agent can lose power at any instruction; these keep each file either old or
 * new (snapshots) or a prefix of whole lines (logs), never something in between.
 */

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Creates `dir` (and parents) and makes it private even if it already existed with looser bits. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}

/**
 * A rename is only durable once the directory entry is: without this an fsynced
 * file can still vanish (or the old one come back) after a power cut.
 */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch (error) {
    // Some filesystems refuse fsync on a directory; the data itself was synced.
    if (!["EISDIR", "EINVAL", "EPERM", "EBADF"].includes(errorCode(error) ?? "")) throw error;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Write to a temporary file beside the target, fsync it, rename it over the
 * target, fsync the directory: readers (and a rebooted agent) see the old file
 * or the new one, never a half-written one.
 */
export function writeFileAtomic(path: string, text: string, mode: number = PRIVATE_FILE_MODE): void {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fd = openSync(temp, "wx", mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // openSync's mode is filtered by the umask; the target mode must not be.
    chmodSync(temp, mode);
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  fsyncDir(dir);
}

/** A leftover from a write that crashed before its rename; safe to delete. */
export function isTempFile(name: string): boolean {
  return name.startsWith(".") && name.endsWith(".tmp");
}

/** Reads a file, or returns undefined when it does not exist. */
export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

/** JSON of a file's text, or undefined when there is no text or it is not JSON (a torn or foreign file). */
export function safeJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export interface JsonlContents {
  /** Every whole line that parsed as JSON, in file order. */
  readonly records: unknown[];
  /** Whole lines that did not parse (skipped, never fatal). */
  readonly skipped: number;
  /** Bytes of an unterminated last line: a write cut short by a crash. */
  readonly tornBytes: number;
}

/**
 * An append-only JSON-lines file. Each append is fsynced before it returns, so
 * a caller that records something before acting on it can rely on the record.
 */
export class JsonlFile {
  readonly path: string;
  #fd: number | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /**
   * Loads the records and cuts off a torn last line, so the next append starts
   * on a line of its own instead of gluing itself to the fragment.
   */
  load(): JsonlContents {
    const text = readIfExists(this.path);
    if (text === undefined) return { records: [], skipped: 0, tornBytes: 0 };
    const end = text.lastIndexOf("\n") + 1;
    const tornBytes = Buffer.byteLength(text.slice(end));
    const records: unknown[] = [];
    let skipped = 0;
    for (const line of text.slice(0, end).split("\n")) {
      if (line.trim() === "") continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        skipped++;
      }
    }
    if (tornBytes > 0) {
      const fd = openSync(this.path, "r+");
      try {
        ftruncateSync(fd, Buffer.byteLength(text.slice(0, end)));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    return { records, skipped, tornBytes };
  }

  /** Appends one record as a line and fsyncs it. */
  append(record: unknown): void {
    this.appendMany([record]);
  }

  appendMany(records: readonly unknown[]): void {
    if (records.length === 0) return;
    const fd = this.#open();
    writeSync(fd, records.map((record) => `${JSON.stringify(record)}\n`).join(""));
    fsyncSync(fd);
  }

  /** Replaces the whole file atomically (compaction). */
  rewrite(records: readonly unknown[]): void {
    this.close();
    writeFileAtomic(this.path, records.map((record) => `${JSON.stringify(record)}\n`).join(""));
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #open(): number {
    if (this.#fd === undefined) {
      const fd = openSync(this.path, "a", PRIVATE_FILE_MODE);
      // A file that was just created is not durable until its directory entry is.
      if (fstatSync(fd).size === 0) fsyncDir(dirname(this.path));
      this.#fd = fd;
    }
    return this.#fd;
  }
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
