import { createHash, createPublicKey, verify } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { concat, gzipStream, type TarEntry, writeTar } from "../../lib/tar.ts";
import { NODE_AUTH_HEADERS, nodeRequestSigningInput } from "../../protocol/artifacts.ts";
import { fromBase64Url } from "../../protocol/base64url.ts";
import type { ArtifactRef } from "../../protocol/deployments.ts";
import { ed25519Signer, generateNodeKey, type NodeKey } from "../../agent/src/keys.ts";
import { ArtifactError, ArtifactStore } from "../../agent/src/tasks/artifacts.ts";

/**
 * The agent's ArtifactStore against a tiny HTTP server that checks the node
 * signature like the control plane does and serves layers, or misbehaves on demand.
 */

const ORG = "acme";
const NODE = "web-1";

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return concat(chunks);
}

async function* bytesOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

function file(path: string, text: string, mode = 0o644): TarEntry {
  const data = new TextEncoder().encode(text);
  return { path, type: "file", mode, size: data.byteLength, content: () => bytesOf(data) };
}

const dir = (path: string): TarEntry => ({ path, type: "directory", mode: 0o755, size: 0 });
const link = (path: string, linkTarget: string): TarEntry => ({ path, type: "symlink", mode: 0o777, size: 0, linkTarget });

async function tgz(entries: TarEntry[]): Promise<Uint8Array> {
  return collect(gzipStream(writeTar(entries)));
}

/** A hand-made ustar header, for entries the real writer refuses to make. */
function rawHeader(name: string, flag: string, size = 0, linkName = ""): Uint8Array {
  const block = new Uint8Array(512);
  const put = (offset: number, text: string) => block.set(new TextEncoder().encode(text), offset);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, `${size.toString(8).padStart(11, "0")}\0`);
  put(136, "00000000000\0");
  block.fill(0x20, 148, 156);
  put(156, flag);
  put(157, linkName);
  put(257, "ustar\u000000");
  const sum = block.reduce((n, b) => n + b, 0);
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

async function rawTgz(headers: Uint8Array[]): Promise<Uint8Array> {
  return collect(gzipStream(bytesOf(concat([...headers, new Uint8Array(1024)]))));
}

function refOf(bytes: Uint8Array, layer: ArtifactRef["layer"] = "app"): ArtifactRef {
  return { digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.byteLength, layer };
}

interface Served {
  bytes: Uint8Array;
  /** Serve these instead (same headers as for `bytes`): a corrupted transfer. */
  corrupt?: Uint8Array;
  status?: number;
}

interface LayerServer {
  url: string;
  layers: Map<string, Served>;
  requests: Array<{ path: string; headers: IncomingHttpHeaders; signatureValid: boolean }>;
  close(): Promise<void>;
}

async function startLayerServer(key: NodeKey): Promise<LayerServer> {
  const layers = new Map<string, Served>();
  const requests: LayerServer["requests"] = [];
  const publicKey = createPublicKey(key.privateKey);
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    const h = (name: string) => String(req.headers[name] ?? "");
    const signature = fromBase64Url(h(NODE_AUTH_HEADERS.signature)) ?? new Uint8Array(0);
    const input = nodeRequestSigningInput(h(NODE_AUTH_HEADERS.org), h(NODE_AUTH_HEADERS.node), req.method ?? "GET", path, Number(h(NODE_AUTH_HEADERS.timestamp)));
    const signatureValid = h(NODE_AUTH_HEADERS.org) === ORG && h(NODE_AUTH_HEADERS.node) === NODE && verify(null, input, publicKey, signature);
    requests.push({ path, headers: req.headers, signatureValid });
    const json = (status: number, code: string, message: string) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code, message } }));
    };
    if (!signatureValid) return json(401, "unauthorized", "invalid node signature");
    const digest = /^\/api\/v1\/agent\/artifacts\/([0-9a-f]{64})$/.exec(path)?.[1] ?? "";
    const served = layers.get(digest);
    if (!served) return json(404, "not_found", `artifact ${digest} not found`);
    if (served.status) return json(served.status, "forbidden", "node 'web-1' is revoked");
    const body = served.corrupt ?? served.bytes;
    res.writeHead(200, { "content-type": "application/gzip", "content-length": String(body.byteLength), "x-zectre-digest": digest });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    layers,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let root: string;
let key: NodeKey;
let server: LayerServer;
let store: ArtifactStore;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), "zectre-agent-artifacts-"));
  key = generateNodeKey();
  server = await startLayerServer(key);
  store = new ArtifactStore({ cacheDir: join(root, "cache"), baseUrl: server.url, org: ORG, nodeId: NODE, signer: ed25519Signer(key.privateKey) });
});
afterEach(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

async function serve(entries: TarEntry[], layer: ArtifactRef["layer"] = "app"): Promise<ArtifactRef> {
  const bytes = await tgz(entries);
  const ref = refOf(bytes, layer);
  server.layers.set(ref.digest, { bytes });
  return ref;
}

async function rejection(promise: Promise<unknown>): Promise<ArtifactError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof ArtifactError)) throw new Error(`expected an ArtifactError, got ${String(error)}`);
  return error;
}

/** The cache holds nothing but these digests' files (no temp leftovers). */
function cacheContents(): string[] {
  return existsSync(join(root, "cache")) ? readdirSync(join(root, "cache")).sort() : [];
}

describe("ArtifactStore.ensure", () => {
  it("downloads with a valid node signature, verifies, caches, and then serves from the cache", async () => {
    const ref = await serve([file("server.js", "v1")]);
    const path = await store.ensure(ref);
    expect(path).toBe(join(root, "cache", `${ref.digest}.tgz`));
    expect(createHash("sha256").update(readFileSync(path)).digest("hex")).toBe(ref.digest);
    expect(server.requests).toHaveLength(1);
    const request = server.requests[0];
    expect(request?.signatureValid).toBe(true);
    expect(Math.abs(Number(request?.headers["x-zectre-timestamp"]) - Date.now())).toBeLessThan(60_000);
    expect(statSync(join(root, "cache")).mode & 0o777).toBe(0o700);

    expect(await store.ensure(ref)).toBe(path);
    expect(server.requests).toHaveLength(1);
  });

  it("downloads a layer once when several tasks want it at the same time", async () => {
    const ref = await serve([file("a.txt", "a".repeat(100_000))]);
    const paths = await Promise.all([store.ensure(ref), store.ensure(ref), store.ensure(ref)]);
    expect(new Set(paths).size).toBe(1);
    expect(server.requests).toHaveLength(1);
  });

  it("refuses a corrupted transfer (digest_mismatch) and caches nothing", async () => {
    const ref = await serve([file("server.js", "the real code")]);
    const served = server.layers.get(ref.digest) as Served;
    const corrupt = served.bytes.slice();
    corrupt[corrupt.byteLength - 10] = (corrupt[corrupt.byteLength - 10] as number) ^ 0xff;
    served.corrupt = corrupt;
    const error = await rejection(store.ensure(ref));
    expect(error.code).toBe("digest_mismatch");
    expect(cacheContents()).toEqual([]);

    // A body of the wrong length is refused too.
    served.corrupt = served.bytes.subarray(0, 20);
    expect((await rejection(store.ensure(ref))).code).toBe("digest_mismatch");
    expect(cacheContents()).toEqual([]);

    // Once the server sends the real bytes, the same ref works.
    delete served.corrupt;
    await store.ensure(ref);
    expect(cacheContents()).toEqual([`${ref.digest}.tgz`]);
  });

  it("types the failures: not_found, unauthorized, network", async () => {
    const missing = refOf(new Uint8Array([1, 2, 3]));
    expect((await rejection(store.ensure(missing))).code).toBe("not_found");

    const ref = await serve([file("a", "a")]);
    (server.layers.get(ref.digest) as Served).status = 403;
    const refused = await rejection(store.ensure(ref));
    expect(refused.code).toBe("unauthorized");
    expect(refused.message).toContain("node 'web-1' is revoked");

    const otherKey = generateNodeKey();
    const impostor = new ArtifactStore({ cacheDir: join(root, "c2"), baseUrl: server.url, org: ORG, nodeId: NODE, signer: ed25519Signer(otherKey.privateKey) });
    expect((await rejection(impostor.ensure(ref))).code).toBe("unauthorized");

    await server.close();
    expect((await rejection(store.ensure(ref))).code).toBe("network");
    server = await startLayerServer(key);
  });
});

describe("ArtifactStore.unpack", () => {
  it("unpacks the app layer, then the deps layer, keeping modes and links", async () => {
    const app = await serve([dir("lib"), file("lib/util.js", "util"), file("run.sh", "#!/bin/sh\n", 0o755), file("server.js", "app"), link("util.js", "lib/util.js")]);
    const deps = await serve([dir("node_modules"), dir("node_modules/.bin"), file("node_modules/pad/index.js", "pad"), link("node_modules/.bin/pad", "../pad/index.js")], "deps");
    const dest = join(root, "tasks", "t1", "app");
    await store.unpack([deps, app], dest);
    expect(readFileSync(join(dest, "server.js"), "utf8")).toBe("app");
    expect(readFileSync(join(dest, "node_modules/.bin/pad"), "utf8")).toBe("pad");
    expect(readlinkSync(join(dest, "util.js"))).toBe("lib/util.js");
    expect(statSync(join(dest, "run.sh")).mode & 0o111).not.toBe(0);
    expect(statSync(join(dest, "server.js")).mode & 0o111).toBe(0);
    // Nothing but the app dir beside it: the staging directory was renamed, not left behind.
    expect(readdirSync(join(root, "tasks", "t1"))).toEqual(["app"]);
  });

  it("fills an existing empty directory, and refuses one that has contents", async () => {
    const app = await serve([file("server.js", "app")]);
    const partial = join(root, "app.partial");
    mkdirSync(partial);
    await store.unpack([app], partial);
    expect(readFileSync(join(partial, "server.js"), "utf8")).toBe("app");
    expect((await rejection(store.unpack([app], partial))).code).toBe("exists");
  });

  async function refuses(archive: Uint8Array, pattern: RegExp): Promise<void> {
    const ref = refOf(archive);
    server.layers.set(ref.digest, { bytes: archive });
    const dest = join(root, "out", "app");
    const error = await rejection(store.unpack([ref], dest));
    expect(error.code).toBe("unsafe_entry");
    expect(error.message).toMatch(pattern);
    // Nothing half-written: no destination, no staging directory, nothing escaped.
    expect(existsSync(join(root, "out")) ? readdirSync(join(root, "out")) : []).toEqual([]);
    expect(existsSync(join(root, "evil"))).toBe(false);
  }

  it("refuses '../evil' and absolute paths", async () => {
    await refuses(await tgz([file("ok.txt", "fine"), file("../evil", "escaped")]), /'\.\.\/evil' climbs out/);
    await refuses(await tgz([file("a/../../evil", "escaped")]), /climbs out/);
    await refuses(await rawTgz([rawHeader("/tmp/evil", "0")]), /absolute path '\/tmp\/evil'/);
  });

  it("refuses links that leave the tree, and paths through a link", async () => {
    await refuses(await tgz([link("etc", "/etc")]), /points outside/);
    await refuses(await tgz([dir("sub"), link("sub/up", "../../evil")]), /points outside/);
    // `a -> .` stays inside, but `a/b/l -> ../../x` would then resolve outside: paths through links are refused.
    await refuses(await tgz([link("a", "."), dir("a/b")]), /goes through the symlink 'a'/);
  });

  it("refuses hard links, devices and FIFOs", async () => {
    await refuses(await rawTgz([rawHeader("hard", "1", 0, "/etc/passwd")]), /hard is a hardlink/);
    await refuses(await rawTgz([rawHeader("dev", "3")]), /dev is a character/);
    await refuses(await rawTgz([rawHeader("pipe", "6")]), /pipe is a fifo/);
  });

  it("reports a layer that is not a valid archive as bad_archive", async () => {
    const notGzip = new TextEncoder().encode("this is not gzip at all");
    const ref = refOf(notGzip);
    server.layers.set(ref.digest, { bytes: notGzip });
    const error = await rejection(store.unpack([ref], join(root, "x")));
    expect(error.code).toBe("bad_archive");
    expect(existsSync(join(root, "x"))).toBe(false);
    expect(lstatSync(root).isDirectory()).toBe(true);
  });
});
