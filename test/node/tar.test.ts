import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { concat, gunzipStream, gzipStream, readTar, readTarEntries, TarError, type TarEntry, writeTar } from "../../lib/tar.ts";

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk.slice());
  return concat(chunks);
}

async function* once(bytes: Uint8Array, pieceSize = bytes.byteLength || 1): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += pieceSize) yield bytes.subarray(i, i + pieceSize);
}

function pattern(size: number, seed = 7): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

function file(path: string, data: Uint8Array | string, mode = 0o644): TarEntry {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // Content arrives in uneven pieces, as reads from disk do.
  return { path, type: "file", mode, size: bytes.byteLength, content: () => once(bytes, 1000) };
}

const LONG_DIR = `${"d".repeat(60)}/${"e".repeat(60)}`;
const ENTRIES: TarEntry[] = [
  { path: "src", type: "directory", mode: 0o755, size: 0 },
  file("src/index.js", "console.log('hi')\n"),
  file("bin/run", "#!/bin/sh\necho run\n", 0o755),
  file("empty.txt", ""),
  file("block-511", pattern(511)),
  file("block-512", pattern(512)),
  file("block-513", pattern(513)),
  file("big.bin", pattern(300_000)),
  { path: "link-to-index", type: "symlink", mode: 0o777, size: 0, linkTarget: "src/index.js" },
  // 121 bytes: fits only through ustar's prefix field.
  file(`${LONG_DIR}/prefixed.txt`, "prefix field"),
  // No split fits ustar: needs a pax path.
  file(`${"p".repeat(120)}/${"q".repeat(120)}.txt`, "pax path"),
  file("ünïcödé/ファイル.txt", "pax for non-ASCII"),
  { path: "long-link", type: "symlink", mode: 0o777, size: 0, linkTarget: `${"t".repeat(150)}/target` },
];

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "zectre-tar-"));
  temps.push(dir);
  return dir;
}

describe("tar writer and reader", () => {
  it("round-trips files, directories, symlinks, modes, long and non-ASCII paths", async () => {
    const archive = await collect(writeTar(ENTRIES));
    expect(archive.byteLength % 512).toBe(0);
    const read = await readTarEntries(once(archive, 777));
    const expected = [...ENTRIES].sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(read.map((e) => e.header.path)).toEqual(expected.map((e) => e.path));
    for (const [i, entry] of expected.entries()) {
      const got = read[i] as (typeof read)[number];
      expect(got.header.type).toBe(entry.type);
      expect(got.header.mode).toBe(entry.mode);
      expect(got.header.linkTarget).toBe(entry.linkTarget ?? "");
      if (entry.type === "file") expect(got.data).toEqual(await collect((entry.content as () => AsyncIterable<Uint8Array>)()));
    }
  });

  it("is deterministic: input order does not matter, and mtime, uid, gid and owner names are empty", async () => {
    const a = await collect(writeTar(ENTRIES));
    const b = await collect(writeTar([...ENTRIES].reverse()));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const header = a.subarray(0, 512);
    const field = (offset: number, length: number) => Buffer.from(header.subarray(offset, offset + length)).toString("latin1");
    expect(field(108, 8)).toBe("0000000\0"); // uid
    expect(field(116, 8)).toBe("0000000\0"); // gid
    expect(field(136, 12)).toBe("00000000000\0"); // mtime
    expect(field(257, 8)).toBe("ustar\u000000");
    expect(field(265, 64)).toBe("\0".repeat(64)); // uname, gname
  });

  it("writes archives GNU tar reads: names, modes, symlinks and contents", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "layer.tar"), await collect(writeTar(ENTRIES)));
    const out = join(dir, "out");
    mkdirSync(out);
    execFileSync("tar", ["-xf", join(dir, "layer.tar"), "-C", out]);
    expect(readFileSync(join(out, "src/index.js"), "utf8")).toBe("console.log('hi')\n");
    expect(statSync(join(out, "bin/run")).mode & 0o777).toBe(0o755);
    expect(Buffer.from(readFileSync(join(out, "big.bin"))).equals(Buffer.from(pattern(300_000)))).toBe(true);
    expect(readFileSync(join(out, LONG_DIR, "prefixed.txt"), "utf8")).toBe("prefix field");
    expect(readFileSync(join(out, "p".repeat(120), `${"q".repeat(120)}.txt`), "utf8")).toBe("pax path");
    expect(readFileSync(join(out, "ünïcödé/ファイル.txt"), "utf8")).toBe("pax for non-ASCII");
    expect(readlinkSync(join(out, "link-to-index"))).toBe("src/index.js");
    expect(readlinkSync(join(out, "long-link"))).toBe(`${"t".repeat(150)}/target`);
  });

  it("reads archives GNU tar writes, including its long-name extension", async () => {
    const dir = tempDir();
    const src = join(dir, "src");
    const longName = `${"n".repeat(150)}.txt`;
    mkdirSync(join(src, "sub"), { recursive: true });
    writeFileSync(join(src, "sub", longName), "gnu long name");
    writeFileSync(join(src, "plain.txt"), "plain");
    for (const format of ["gnu", "posix"]) {
      const archive = execFileSync("tar", ["-cf", "-", `--format=${format}`, "-C", src, "plain.txt", `sub/${longName}`]);
      const entries = await readTarEntries(once(new Uint8Array(archive), 1500));
      const byPath = new Map(entries.map((e) => [e.header.path, new TextDecoder().decode(e.data)]));
      expect(byPath.get("plain.txt")).toBe("plain");
      expect(byPath.get(`sub/${longName}`)).toBe("gnu long name");
    }
  });

  it("refuses a file whose size changed while packing", async () => {
    const liar: TarEntry = { path: "grew.txt", type: "file", mode: 0o644, size: 3, content: () => once(new Uint8Array(10)) };
    await expect(collect(writeTar([liar]))).rejects.toThrow(/changed while it was being packed/);
    const shrank: TarEntry = { path: "shrank.txt", type: "file", mode: 0o644, size: 30, content: () => once(new Uint8Array(10)) };
    await expect(collect(writeTar([shrank]))).rejects.toThrow(TarError);
  });

  it("reports a corrupted header and an archive cut short", async () => {
    const archive = await collect(writeTar([file("a.txt", pattern(2000))]));
    const corrupted = archive.slice();
    corrupted[10] = 0x41;
    await expect(readTarEntries(once(corrupted))).rejects.toThrow(/checksum/);
    await expect(readTarEntries(once(archive.subarray(0, 1024)))).rejects.toThrow(/ends in the middle/);
    await expect(readTarEntries(once(archive.subarray(0, 300)))).rejects.toThrow(/ends in the middle/);
  });

  it("streams: content arrives as data events between entry and entry-end", async () => {
    const archive = await collect(writeTar([file("a", pattern(150_000)), file("b", "bee")]));
    const kinds: string[] = [];
    let bytesOfA = 0;
    for await (const event of readTar(once(archive, 4096))) {
      kinds.push(event.kind);
      if (event.kind === "data" && kinds.filter((k) => k === "entry").length === 1) bytesOfA += event.chunk.byteLength;
    }
    expect(bytesOfA).toBe(150_000);
    expect(kinds.filter((k) => k === "data").length).toBeGreaterThan(10);
    expect(kinds.filter((k) => k !== "data")).toEqual(["entry", "entry-end", "entry", "entry-end"]);
  });
});

describe("gzip", () => {
  it("gives the same bytes whatever the input chunking, and zlib reads them", async () => {
    const data = concat([pattern(200_000, 1), new Uint8Array(100_000), pattern(50_001, 9)]);
    const whole = await collect(gzipStream(once(data)));
    const pieces = await collect(gzipStream(once(data, 1234)));
    expect(Buffer.from(whole).equals(Buffer.from(pieces))).toBe(true);
    // No mtime (bytes 4-7) and no file name flag (FNAME, bit 3 of byte 3) in the header.
    expect(Array.from(whole.subarray(4, 8))).toEqual([0, 0, 0, 0]);
    expect((whole[3] as number) & 0x08).toBe(0);
    expect(Buffer.from(gunzipSync(whole)).equals(Buffer.from(data))).toBe(true);
  });

  it("gunzips in a stream, and reports truncated or garbage input as TarError", async () => {
    const data = pattern(500_000);
    const packed = await collect(gzipStream(once(data)));
    expect(Buffer.from(await collect(gunzipStream(once(packed, 999)))).equals(Buffer.from(data))).toBe(true);
    await expect(collect(gunzipStream(once(packed.subarray(0, packed.byteLength - 100))))).rejects.toThrow(TarError);
    await expect(collect(gunzipStream(once(pattern(1000))))).rejects.toThrow(TarError);
  });
});
