import { Gunzip, Gzip } from "fflate";

/**
 * The tar format of artifact layers (ustar, with pax headers where ustar falls
 * short), shared by the CLI, which writes layers, and the agent, which reads them.
 *
 * Both directions stream: the writer pulls file contents one chunk at a time, and
 * the reader hands out events as bytes arrive. A layer may be 100 MB compressed and
 * several times that unpacked, so neither side ever holds a whole archive.
 */

const BLOCK = 512;
const EMPTY = new Uint8Array(0);
/** ustar's size field holds 11 octal digits. */
const MAX_USTAR_SIZE = 0o77777777777;

export class TarError extends Error {
  override readonly name: string = "TarError";
}

// ---- writing ----

export type TarEntryType = "file" | "directory" | "symlink";

export interface TarEntry {
  /** Relative, `/`-separated, no leading `/`, no trailing `/` (directories get theirs in the archive). */
  path: string;
  type: TarEntryType;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  /** Files: exact byte count of `content`; 0 for the rest. */
  size: number;
  /** Symlinks: the target as stored, never resolved. */
  linkTarget?: string;
  /** Files: the bytes, read when the writer reaches this entry. */
  content?: () => AsyncIterable<Uint8Array>;
}

/** Path order makes the archive independent of directory listing order; a parent sorts before its children. */
export function compareTarPaths(a: TarEntry, b: TarEntry): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

function writeString(block: Uint8Array, offset: number, length: number, text: string): void {
  const bytes = encoder.encode(text);
  if (bytes.byteLength > length) throw new TarError(`'${text}' does not fit a ${length}-byte tar field`);
  block.set(bytes, offset);
}

function writeOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  writeString(block, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

/** Splits a long path at a `/` into ustar's prefix (155 bytes) and name (100 bytes); null when no split fits. */
function splitUstarPath(path: string): { prefix: string; name: string } | null {
  if (path.length <= 100) return { prefix: "", name: path };
  for (let i = path.lastIndexOf("/"); i > 0; i = path.lastIndexOf("/", i - 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (name.length > 100) return null;
    if (prefix.length <= 155 && name !== "") return { prefix, name };
  }
  return null;
}

function typeflag(type: TarEntryType | "pax"): string {
  return { file: "0", directory: "5", symlink: "2", pax: "x" }[type];
}

interface RawHeader {
  name: string;
  prefix: string;
  type: TarEntryType | "pax";
  mode: number;
  size: number;
  linkTarget: string;
}

/** mtime, uid and gid are 0 and the owner names empty, so an archive depends on content alone. */
function headerBlock(header: RawHeader): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, header.name);
  writeOctal(block, 100, 8, header.mode);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  writeOctal(block, 124, 12, header.size);
  writeOctal(block, 136, 12, 0);
  block.fill(0x20, 148, 156);
  writeString(block, 156, 1, typeflag(header.type));
  writeString(block, 157, 100, header.linkTarget);
  writeString(block, 257, 6, "ustar\0");
  writeString(block, 263, 2, "00");
  writeString(block, 345, 155, header.prefix);
  const sum = block.reduce((total, byte) => total + byte, 0);
  writeString(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

/** A pax record is `<length> <key>=<value>\n`, where length counts the whole record including its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyBytes = encoder.encode(body).byteLength;
  let length = bodyBytes + 1;
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
  return `${length}${body}`;
}

function padding(size: number): Uint8Array {
  const rest = size % BLOCK;
  return rest === 0 ? EMPTY : new Uint8Array(BLOCK - rest);
}

/** The header blocks of one entry: a pax header first when the path or link target does not fit ustar. */
function entryHeaders(entry: TarEntry): Uint8Array[] {
  if (entry.path === "" || entry.path.startsWith("/") || entry.path.endsWith("/")) throw new TarError(`invalid tar path '${entry.path}'`);
  if (entry.size > MAX_USTAR_SIZE) throw new TarError(`${entry.path} is too large for a layer (${entry.size} bytes)`);
  const path = entry.type === "directory" ? `${entry.path}/` : entry.path;
  const link = entry.type === "symlink" ? (entry.linkTarget ?? "") : "";
  const split = isAscii(path) ? splitUstarPath(path) : null;
  const linkFits = isAscii(link) && link.length <= 100;
  const records = (split ? "" : paxRecord("path", path)) + (linkFits ? "" : paxRecord("linkpath", link));
  const blocks: Uint8Array[] = [];
  if (records !== "") {
    const body = encoder.encode(records);
    blocks.push(headerBlock({ name: "././@PaxHeader", prefix: "", type: "pax", mode: 0o644, size: body.byteLength, linkTarget: "" }));
    blocks.push(body, padding(body.byteLength));
  }
  const fallbackName = path.replace(/[^\x20-\x7e]/g, "_").slice(-100);
  blocks.push(
    headerBlock({
      name: split?.name ?? fallbackName,
      prefix: split?.prefix ?? "",
      type: entry.type,
      mode: entry.mode & 0o7777,
      size: entry.type === "file" ? entry.size : 0,
      linkTarget: linkFits ? link : "",
    }),
  );
  return blocks;
}

async function* fileContent(entry: TarEntry): AsyncGenerator<Uint8Array> {
  let written = 0;
  if (entry.size > 0 || entry.content) {
    if (!entry.content) throw new TarError(`${entry.path}: a file entry needs its content`);
    for await (const chunk of entry.content()) {
      written += chunk.byteLength;
      if (written > entry.size) break;
      yield chunk;
    }
  }
  // The header already promised `size` bytes; a file that changed size meanwhile would corrupt the archive.
  if (written !== entry.size) throw new TarError(`${entry.path} changed while it was being packed (expected ${entry.size} bytes)`);
}

/** Writes the entries in path order, then the two zero blocks that end an archive. */
export async function* writeTar(entries: readonly TarEntry[]): AsyncGenerator<Uint8Array> {
  for (const entry of [...entries].sort(compareTarPaths)) {
    yield* entryHeaders(entry);
    if (entry.type !== "file") continue;
    yield* fileContent(entry);
    const pad = padding(entry.size);
    if (pad.byteLength > 0) yield pad;
  }
  yield new Uint8Array(BLOCK * 2);
}

// ---- reading ----

export type TarHeaderType = "file" | "directory" | "symlink" | "hardlink" | "character" | "block" | "fifo" | "other";

export interface TarHeader {
  path: string;
  type: TarHeaderType;
  mode: number;
  size: number;
  linkTarget: string;
}

export type TarEvent =
  | { kind: "entry"; header: TarHeader }
  /** Part of the current entry's content, in order; a view that is only valid until the next event. */
  | { kind: "data"; chunk: Uint8Array }
  | { kind: "entry-end" };

const HEADER_TYPES: Readonly<Record<string, TarHeaderType>> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "character",
  "4": "block",
  "5": "directory",
  "6": "fifo",
};

/** A FIFO of byte chunks that hands out exact-size pieces without copying more than it must. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  /** Up to `max` bytes from the front, as a view of one chunk. */
  takeSome(max: number): Uint8Array {
    const first = this.chunks[0] as Uint8Array;
    if (first.byteLength <= max) {
      this.chunks.shift();
      this.length -= first.byteLength;
      return first;
    }
    this.chunks[0] = first.subarray(max);
    this.length -= max;
    return first.subarray(0, max);
  }

  /** Exactly `n` bytes (n <= length), copied when they span chunks. */
  take(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first && first.byteLength >= n) return this.takeSome(n);
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n; ) {
      const piece = this.takeSome(n - filled);
      out.set(piece, filled);
      filled += piece.byteLength;
    }
    return out;
  }
}

function readString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

function readOctal(block: Uint8Array, offset: number, length: number): number {
  const text = readString(block, offset, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`bad number '${text}' in a tar header`);
  return parseInt(text, 8);
}

function checksumValid(block: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
  return readOctal(block, 148, 8) === sum;
}

function parsePax(body: Uint8Array): Record<string, string> {
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < body.byteLength) {
    const space = body.indexOf(0x20, offset);
    const length = Number(decoder.decode(body.subarray(offset, space)));
    if (space === -1 || !Number.isSafeInteger(length) || length <= 0 || offset + length > body.byteLength) throw new TarError("malformed pax header");
    const record = decoder.decode(body.subarray(space + 1, offset + length - 1));
    const equals = record.indexOf("=");
    if (equals > 0) records[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return records;
}

/** Overrides carried by pax ('x') and GNU long-name ('L', 'K') entries for the entry that follows them. */
interface Pending {
  path?: string;
  linkTarget?: string;
  size?: number;
}

function parseHeader(block: Uint8Array, pending: Pending): TarHeader & { flag: string } {
  if (!checksumValid(block)) throw new TarError("tar header checksum mismatch: not a tar archive, or a corrupted one");
  const flag = String.fromCharCode(block[156] as number);
  const name = readString(block, 0, 100);
  const prefix = readString(block, 257, 6) === "ustar" ? readString(block, 345, 155) : "";
  const path = pending.path ?? (prefix === "" ? name : `${prefix}/${name}`);
  return {
    flag,
    path: path.replace(/\/+$/, ""),
    type: HEADER_TYPES[flag] ?? "other",
    mode: readOctal(block, 100, 8) & 0o7777,
    size: pending.size ?? readOctal(block, 124, 12),
    linkTarget: pending.linkTarget ?? readString(block, 157, 100),
  };
}

/**
 * Reads an archive as a stream of events: `entry`, its `data` chunks, `entry-end`.
 * Stops at the end-of-archive blocks (or a clean end of input between entries);
 * input that ends inside an entry is a TarError.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEvent> {
  const queue = new ByteQueue();
  const iterator = source[Symbol.asyncIterator]();
  let exhausted = false;
  const fill = async (n: number): Promise<boolean> => {
    while (queue.length < n && !exhausted) {
      const next = await iterator.next();
      if (next.done) exhausted = true;
      else queue.push(next.value);
    }
    return queue.length >= n;
  };
  const need = async (n: number, what: string): Promise<void> => {
    if (!(await fill(n))) throw new TarError(`the archive ends in the middle of ${what}`);
  };
  let pending: Pending = {};
  while (await fill(BLOCK)) {
    const block = queue.take(BLOCK);
    if (block.every((byte) => byte === 0)) return;
    const header = parseHeader(block, pending);
    const padded = header.size + padding(header.size).byteLength;
    if (header.flag === "x" || header.flag === "g" || header.flag === "L" || header.flag === "K") {
      await need(padded, "an extended header");
      const body = queue.take(padded).subarray(0, header.size);
      if (header.flag === "x") pending = applyPax(pending, parsePax(body));
      if (header.flag === "L") pending = { ...pending, path: readString(body, 0, body.byteLength) };
      if (header.flag === "K") pending = { ...pending, linkTarget: readString(body, 0, body.byteLength) };
      continue;
    }
    pending = {};
    const { flag: _flag, ...entry } = header;
    yield { kind: "entry", header: entry };
    let left = header.size;
    while (left > 0) {
      await need(1, entry.path);
      const chunk = queue.takeSome(left);
      left -= chunk.byteLength;
      yield { kind: "data", chunk };
    }
    await need(padded - header.size, entry.path);
    queue.take(padded - header.size);
    yield { kind: "entry-end" };
  }
  if (queue.length > 0) throw new TarError("the archive ends in the middle of a header");
}

function applyPax(pending: Pending, records: Record<string, string>): Pending {
  const next = { ...pending };
  if (records.path !== undefined) next.path = records.path;
  if (records.linkpath !== undefined) next.linkTarget = records.linkpath;
  if (records.size !== undefined) {
    const size = Number(records.size);
    if (!Number.isSafeInteger(size) || size < 0) throw new TarError(`bad pax size '${records.size}'`);
    next.size = size;
  }
  return next;
}

/** Every entry with its whole content: for small archives (tests, listings), not for unpacking layers. */
export async function readTarEntries(source: AsyncIterable<Uint8Array>): Promise<Array<{ header: TarHeader; data: Uint8Array }>> {
  const entries: Array<{ header: TarHeader; data: Uint8Array }> = [];
  let current: { header: TarHeader; chunks: Uint8Array[] } | null = null;
  for await (const event of readTar(source)) {
    if (event.kind === "entry") current = { header: event.header, chunks: [] };
    else if (event.kind === "data") current?.chunks.push(event.chunk.slice());
    else if (current) {
      entries.push({ header: current.header, data: concat(current.chunks) });
      current = null;
    }
  }
  return entries;
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

// ---- gzip ----

/** Compression works on fixed-size pieces, so the output cannot depend on how the input happened to be chunked. */
const GZIP_PIECE = 64 * 1024;

async function* fixedPieces(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  const queue = new ByteQueue();
  for await (const chunk of source) {
    queue.push(chunk);
    while (queue.length >= size) yield queue.take(size).slice();
  }
  if (queue.length > 0) yield queue.take(queue.length).slice();
}

/** gzip with no mtime and no file name in the header: the same input always gives the same bytes. */
export async function* gzipStream(source: AsyncIterable<Uint8Array>, level: 6 | 9 = 6): AsyncGenerator<Uint8Array> {
  const out: Uint8Array[] = [];
  const gzip = new Gzip({ level, mtime: 0 }, (chunk) => out.push(chunk));
  for await (const piece of fixedPieces(source, GZIP_PIECE)) {
    gzip.push(piece);
    yield* out.splice(0);
  }
  gzip.push(EMPTY, true);
  yield* out.splice(0);
}

/** Gunzips as bytes arrive; truncated or corrupted input is a TarError (errors of the source pass through as they are). */
export async function* gunzipStream(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const out: Uint8Array[] = [];
  const gunzip = new Gunzip((chunk) => out.push(chunk));
  const push = (chunk: Uint8Array, final: boolean) => {
    try {
      gunzip.push(chunk, final);
    } catch (error) {
      throw new TarError(`not valid gzip data: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  for await (const chunk of source) {
    push(chunk, false);
    yield* out.splice(0);
  }
  push(EMPTY, true);
  yield* out.splice(0);
}
