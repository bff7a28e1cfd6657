import type { Stats } from "node:fs";
import { chmod, type FileHandle, lstat, open, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { MAX_OUTPUT_BYTES } from "../../../../protocol/jobs.ts";
import type { JsonObject } from "../../../../protocol/json.ts";
import { errorCode, messageOf } from "../../state/files.ts";
import { argument, requiredPath, requiredText } from "../args.ts";
import { CappedOutput } from "../output.ts";
import { FunctionError, type JobFunction } from "../types.ts";

/** `file.*`: read, write and stat one file by absolute path. */

export const fileFunctions: readonly JobFunction[] = [
  {
    name: "file.read",
    doc: "Returns the text of a file (path= or the first positional argument), cut at 1 MiB with a marker.",
    mutates: false,
    run: (args) => readText(requiredPath(args, "file.read")),
  },
  {
    name: "file.write",
    doc: "Writes contents= to path= (parent must exist), with mode= (octal, e.g. '0644') if given; returns {path, bytes, mode}.",
    mutates: true,
    describe: (args) => {
      const { path, contents, mode } = writeOptions(args);
      return `write ${Buffer.byteLength(contents)} bytes to ${path}${mode === undefined ? "" : ` with mode ${octal(mode)}`}`;
    },
    run: (args) => writeText(writeOptions(args)),
  },
  {
    name: "file.stat",
    doc: "Returns {exists, type, size, mode, mtime} of a path (not following a final symlink).",
    mutates: false,
    run: (args) => statPath(requiredPath(args, "file.stat")),
  },
];

const READ_CHUNK = 64 * 1024;

async function readText(path: string): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw fileError(error, path);
  }
  try {
    const info = await handle.stat();
    if (info.isDirectory()) throw new FunctionError(`${path} is a directory`);
    const output = new CappedOutput(MAX_OUTPUT_BYTES);
    const buffer = Buffer.alloc(READ_CHUNK);
    // One byte past the limit is enough to know the file was cut; /dev/zero must not be read forever.
    for (let total = 0; total <= MAX_OUTPUT_BYTES; ) {
      const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      output.push(Buffer.from(buffer.subarray(0, bytesRead)));
      total += bytesRead;
    }
    return output.text();
  } catch (error) {
    throw error instanceof FunctionError ? error : fileError(error, path);
  } finally {
    await handle.close();
  }
}

interface WriteOptions {
  path: string;
  contents: string;
  mode: number | undefined;
}

function writeOptions(args: JsonObject): WriteOptions {
  const path = requiredPath(args, "file.write");
  const contents = requiredText(args, "file.write", "contents", 1);
  const rawMode = argument(args, "mode");
  return { path, contents, mode: rawMode === undefined ? undefined : parseMode(rawMode) };
}

/**
 * Modes are octal: `"0644"`, `"644"`, `"0o644"`, or a number written the same
 * way (`644`, as YAML and Salt read it); at most `07777`.
 */
export function parseMode(value: unknown): number {
  const text = typeof value === "number" && Number.isInteger(value) && value >= 0 ? String(value) : typeof value === "string" ? value.trim() : undefined;
  const match = text === undefined ? null : /^(?:0o|0)?([0-7]{1,4})$/i.exec(text);
  if (!match) throw new FunctionError(`mode must be octal like '0644', got ${JSON.stringify(value)}`);
  return Number.parseInt(match[1] as string, 8);
}

export function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;
}

async function writeText({ path, contents, mode }: WriteOptions): Promise<JsonObject> {
  try {
    await writeFile(path, contents, mode === undefined ? {} : { mode });
    // The create mode is filtered by the umask, and an existing file keeps its old mode: set it outright.
    if (mode !== undefined) await chmod(path, mode);
    const info = await stat(path);
    return { path, bytes: Buffer.byteLength(contents), mode: octal(info.mode) };
  } catch (error) {
    if (errorCode(error) === "ENOENT") throw new FunctionError(`parent directory ${dirname(path)} does not exist`);
    throw fileError(error, path);
  }
}

async function statPath(path: string): Promise<JsonObject> {
  let info: Stats;
  try {
    info = await lstat(path);
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return { exists: false, type: null, size: null, mode: null, mtime: null };
    throw fileError(error, path);
  }
  return { exists: true, type: fileType(info), size: info.size, mode: octal(info.mode), mtime: info.mtime.toISOString() };
}

function fileType(info: Stats): string {
  if (info.isFile()) return "file";
  if (info.isDirectory()) return "directory";
  if (info.isSymbolicLink()) return "symlink";
  if (info.isFIFO()) return "fifo";
  if (info.isSocket()) return "socket";
  if (info.isBlockDevice()) return "block";
  if (info.isCharacterDevice()) return "char";
  return "other";
}

/** The usual errno codes as plain sentences; anything else keeps Node's message. */
function fileError(error: unknown, path: string): FunctionError {
  switch (errorCode(error)) {
    case "ENOENT":
      return new FunctionError(`no such file: ${path}`);
    case "EACCES":
    case "EPERM":
      return new FunctionError(`permission denied: ${path}`);
    case "EISDIR":
      return new FunctionError(`${path} is a directory`);
    case "ENOTDIR":
      return new FunctionError(`a parent of ${path} is not a directory`);
    default:
      return new FunctionError(messageOf(error));
  }
}
