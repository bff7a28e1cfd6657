import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { ArtifactInfo } from "../../protocol/artifacts.ts";
import { progressBar } from "../../cli/src/progress.ts";
import { type CliResult, expectOneErrorLine, lines, runBinary, runInProcess, useTempDirs } from "./helpers/run-cli.ts";

/**
 * `zectre artifact push|list|show` against a small in-process registry that speaks
 * the artifact routes: it checks the token, reads uploads as a stream, verifies
 * the digest and records what each request carried.
 */

const TOKEN = "zt_acme_tok1_secret";

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  bytes: number;
}

interface Registry {
  url: string;
  stored: Map<string, ArtifactInfo>;
  seen: Seen[];
  failNextPut: { status: number; code: string; message: string } | null;
  close(): Promise<void>;
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

async function startRegistry(): Promise<Registry> {
  const stored = new Map<string, ArtifactInfo>();
  const seen: Seen[] = [];
  const registry: Registry = { url: "", stored, seen, failNextPut: null, close: async () => undefined };
  let clock = 0;
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://registry");
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of req) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).byteLength;
    }
    const method = req.method ?? "GET";
    seen.push({ method, path: url.pathname, query: url.searchParams, headers: req.headers, bytes });
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return reply(401, errorBody("unauthorized", "invalid or revoked API token"));
    const match = /^\/api\/v1\/artifacts(?:\/([0-9a-f]{64}))?$/.exec(url.pathname);
    if (!match) return reply(404, errorBody("not_found", `no route for ${method} ${url.pathname}`));
    const digest = match[1];
    if (digest === undefined && method === "GET") {
      const layer = url.searchParams.get("layer");
      const lockfile = url.searchParams.get("lockfile");
      const prefix = url.searchParams.get("prefix") ?? "";
      const artifacts = [...stored.values()].filter(
        (a) => (layer === null || a.layer === layer) && (lockfile === null || a.lockfile === lockfile) && a.digest.startsWith(prefix),
      );
      return reply(200, { artifacts });
    }
    if (digest === undefined) return reply(405, errorBody("method_not_allowed", "no"));
    const existing = stored.get(digest);
    if (method === "GET" || method === "HEAD") return existing ? reply(200, { artifact: existing }) : reply(404, errorBody("not_found", `artifact ${digest} not found`));
    if (method !== "PUT") return reply(405, errorBody("method_not_allowed", "no"));
    if (registry.failNextPut) {
      const fail = registry.failNextPut;
      registry.failNextPut = null;
      return reply(fail.status, errorBody(fail.code, fail.message));
    }
    if (existing) return reply(200, { artifact: existing, created: false });
    if (hash.digest("hex") !== digest) return reply(400, errorBody("digest_mismatch", "the uploaded bytes do not hash to the digest in the URL"));
    const layer = url.searchParams.get("layer") === "deps" ? "deps" : "app";
    const artifact: ArtifactInfo = {
      digest,
      size: bytes,
      layer,
      lockfile: url.searchParams.get("lockfile"),
      uploadedAt: new Date(Date.UTC(2026, 0, 5, 10, clock++)).toISOString(),
      uploadedBy: "admin",
    };
    stored.set(digest, artifact);
    return reply(201, { artifact, created: true });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  registry.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  registry.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return registry;
}

const tempDir = useTempDirs();
let registry: Registry;
let configDir: string;

beforeEach(async () => {
  registry = await startRegistry();
  configDir = tempDir();
});
afterEach(() => registry.close());

const flags = () => ["--url", registry.url, "--token", TOKEN];
const zectre = (...args: string[]): Promise<CliResult> => runBinary([...flags(), ...args], { env: { ZECTRE_CONFIG_DIR: configDir } });
const quick = (...args: string[]): Promise<CliResult> => runInProcess([...flags(), ...args], { env: { ZECTRE_CONFIG_DIR: configDir } });
const puts = () => registry.seen.filter((s) => s.method === "PUT");

function appDir(): string {
  const dir = tempDir();
  const files: Record<string, string> = {
    "server.js": "console.log('v1')\n",
    "package.json": '{"name":"web","scripts":{"start":"node server.js"}}\n',
    "package-lock.json": '{"lockfileVersion":3,"packages":{}}\n',
    ".gitignore": "node_modules/\n*.log\n",
    "debug.log": "not packed",
    "node_modules/dep/index.js": `module.exports = ${JSON.stringify("x".repeat(50_000))}\n`,
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

interface PushJson {
  refs: Array<{ layer: string; digest: string; size: number }>;
  layers: Array<{ layer: string; digest: string; uploaded: boolean; reusedBy: string | null; files: number }>;
}

describe("zectre artifact push", () => {
  it("uploads the app and deps layers as streams with a Content-Length, then prints the refs", async () => {
    const dir = appDir();
    const result = await zectre("artifact", "push", dir, "--format", "json");
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as PushJson;
    expect(out.layers.map((l) => [l.layer, l.uploaded, l.reusedBy])).toEqual([
      ["app", true, null],
      ["deps", true, null],
    ]);
    expect(out.refs).toEqual(out.layers.map((l) => ({ layer: l.layer, digest: l.digest, size: registry.stored.get(l.digest)?.size })));
    const app = out.layers[0] as PushJson["layers"][number];
    expect(app.files).toBe(4); // server.js, package.json, package-lock.json, .gitignore

    const appPut = puts().find((p) => p.query.get("layer") === "app");
    const depsPut = puts().find((p) => p.query.get("layer") === "deps");
    expect(puts()).toHaveLength(2);
    expect(appPut?.headers["content-length"]).toBe(String(appPut?.bytes));
    expect(appPut?.headers["transfer-encoding"]).toBeUndefined();
    expect(depsPut?.query.get("lockfile")).toBe(createHash("sha256").update('{"lockfileVersion":3,"packages":{}}\n').digest("hex"));
    // The lockfile lookup came first, before anything was packed or sent.
    const first = registry.seen[0];
    expect([first?.method, first?.query.get("layer"), first?.query.get("lockfile")]).toEqual(["GET", "deps", depsPut?.query.get("lockfile")]);

    // Progress went to stderr as milestone lines (not a terminal), never to stdout.
    expect(lines(result.stderr)).toContain(`uploading app: 0% (0 B of ${formatKib(appPut?.bytes ?? 0)})`);
    expect(lines(result.stderr).filter((l) => /^uploading deps: 100% /.test(l))).toHaveLength(1);
    expect(lines(result.stderr).filter((l) => /^packing deps: (0|25|50|75|100)% /.test(l)).length).toBeGreaterThanOrEqual(2);
  });

  it("uploads nothing the second time, and only the app layer after a code change", async () => {
    const dir = appDir();
    expect((await zectre("artifact", "push", dir)).code).toBe(0);
    const firstPuts = puts().length;

    const again = await zectre("artifact", "push", dir);
    expect(again.code).toBe(0);
    expect(puts()).toHaveLength(firstPuts);
    const rows = lines(again.stdout);
    expect(rows[0]).toMatch(/^LAYER\s+DIGEST\s+SIZE\s+FILES\s+RESULT$/);
    expect(rows[1]).toMatch(/^app\s+[0-9a-f]{64}\s+\S+ \S+\s+4\s+already stored$/);
    expect(rows[2]).toMatch(/^deps\s+[0-9a-f]{64}\s+\S+ \S+\s+-\s+reused \(lockfile unchanged\)$/);

    writeFileSync(join(dir, "server.js"), "console.log('v2')\n");
    const changed = await zectre("artifact", "push", dir, "--format", "json");
    const out = JSON.parse(changed.stdout) as PushJson;
    expect(out.layers.map((l) => [l.layer, l.uploaded, l.reusedBy])).toEqual([
      ["app", true, null],
      ["deps", false, "lockfile"],
    ]);
    expect(puts().slice(firstPuts).map((p) => p.query.get("layer"))).toEqual(["app"]);
  });

  it("draws one redrawn line per layer and phase on a terminal", async () => {
    const dir = appDir();
    const result = await runInProcess([...flags(), "artifact", "push", dir], { env: { ZECTRE_CONFIG_DIR: configDir }, tty: true });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("\r\u001b[2Kuploading app [");
    const finished = result.stderr.split("\n").filter((l) => l.includes("100%"));
    expect(finished.map((l) => l.slice(l.lastIndexOf("\r") + 5).split(" [")[0])).toEqual(["packing deps", "uploading deps", "packing app", "uploading app"]);
  });

  it("reports a refused upload as one error line", async () => {
    registry.failNextPut = { status: 413, code: "payload_too_large", message: "the layer is 120000000 bytes; this server accepts at most 104857600" };
    const dir = appDir();
    const result = await quick("artifact", "push", dir);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(lines(result.stderr).at(-1)).toBe("zectre: error: the layer is 120000000 bytes; this server accepts at most 104857600 (payload_too_large)");
  });

  it("refuses a directory that does not exist", async () => {
    expectOneErrorLine(await quick("artifact", "push", join(tempDir(), "nope")), /^zectre: error: .*nope is not a directory\n$/);
  });
});

function formatKib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function store(info: Partial<ArtifactInfo> & { digest: string }): ArtifactInfo {
  const full: ArtifactInfo = { size: 2048, layer: "app", lockfile: null, uploadedAt: "2026-01-05T10:00:00.000Z", uploadedBy: "ci", ...info };
  registry.stored.set(full.digest, full);
  return full;
}

describe("zectre artifact list and show", () => {
  it("lists newest first with short digests and human sizes, filters by layer, and says when there are none", async () => {
    expect((await quick("artifact", "list")).stdout).toBe("No artifacts found.\n");
    const old = store({ digest: "a".repeat(64), size: 5_000_000, uploadedAt: "2026-01-04T09:00:00.000Z" });
    const deps = store({ digest: "b".repeat(64), layer: "deps", lockfile: "c".repeat(64), uploadedAt: "2026-01-06T11:30:00.000Z" });
    const result = await quick("artifact", "list");
    expect(result.stderr).toBe("");
    expect(lines(result.stdout)).toEqual([
      "DIGEST        LAYER  SIZE     UPLOADED           BY",
      "bbbbbbbbbbbb  deps   2.0 KiB  2026-01-06 11:30Z  ci",
      "aaaaaaaaaaaa  app    4.8 MiB  2026-01-04 09:00Z  ci",
    ]);
    const json = await quick("artifact", "list", "--layer", "deps", "--format", "json");
    expect(JSON.parse(json.stdout)).toEqual({ artifacts: [deps] });
    expect(registry.seen.at(-1)?.query.get("layer")).toBe("deps");
    const yaml = await quick("artifact", "list", "--format", "yaml");
    expect(parseYaml(yaml.stdout)).toEqual({ artifacts: [deps, old] });
  });

  it("shows a layer by full digest or unique prefix", async () => {
    const deps = store({ digest: `1234abcd${"e".repeat(56)}`, layer: "deps", lockfile: "c".repeat(64) });
    store({ digest: `1234abce${"f".repeat(56)}` });
    const full = await quick("artifact", "show", deps.digest);
    expect(full.stderr).toBe("");
    expect(lines(full.stdout)).toEqual([
      `Digest:    ${deps.digest}`,
      "Layer:     deps",
      "Size:      2.0 KiB (2048 bytes)",
      `Lockfile:  ${"c".repeat(64)}`,
      "Uploaded:  2026-01-05 10:00Z",
      "By:        ci",
    ]);
    const byPrefix = await quick("artifact", "show", "1234ABCD", "--format", "json");
    expect(JSON.parse(byPrefix.stdout)).toEqual({ artifact: deps });
    expect(registry.seen.at(-1)?.query.get("prefix")).toBe("1234abcd");
  });

  it("explains ambiguous, unknown, short and malformed digests in one line", async () => {
    store({ digest: `1234abcd${"e".repeat(56)}` });
    store({ digest: `1234abce${"f".repeat(56)}` });
    expectOneErrorLine(await quick("artifact", "show", "1234abc0"), "zectre: error: no artifact's digest starts with 1234abc0");
    expectOneErrorLine(await quick("artifact", "show", "1234abc"), /invalid digest '1234abc': give the sha256 \(64 hex characters\) or at least its first 8/);
    expectOneErrorLine(await quick("artifact", "show", "1234abcz"), /invalid digest '1234abcz'/);
    store({ digest: `1234abcd${"0".repeat(56)}` });
    expectOneErrorLine(await quick("artifact", "show", "1234abcd"), "zectre: error: 2 artifacts' digests start with 1234abcd; give more characters");
    expectOneErrorLine(await quick("artifact", "show", "9".repeat(64)), `zectre: error: artifact ${"9".repeat(64)} not found (not_found)`);
  });
});

describe("progress output", () => {
  function capture(isTTY: boolean) {
    let text = "";
    return { stream: { write: (chunk: string) => (text += chunk), isTTY }, text: () => text };
  }

  it("prints each milestone once, and only the highest when it jumps past several", () => {
    const out = capture(false);
    const bar = progressBar(out.stream, "uploading app");
    for (const done of [0, 10, 10, 30, 80, 99, 100, 100]) bar.update(done * 1024, 100 * 1024);
    expect(out.text()).toBe(
      [
        "uploading app: 0% (0 B of 100.0 KiB)",
        "uploading app: 25% (30.0 KiB of 100.0 KiB)",
        "uploading app: 75% (80.0 KiB of 100.0 KiB)",
        "uploading app: 100% (100.0 KiB of 100.0 KiB)",
        "",
      ].join("\n"),
    );
  });

  it("redraws one terminal line per whole percent and ends it at 100%", () => {
    const out = capture(true);
    const bar = progressBar(out.stream, "packing app");
    for (let done = 0; done <= 1000; done++) bar.update(done, 1000);
    expect(out.text().split("\r").filter(Boolean)).toHaveLength(101);
    expect(out.text().endsWith("100%  1000 B of 1000 B\n")).toBe(true);
    const empty = capture(true);
    progressBar(empty.stream, "packing app").update(0, 0);
    expect(empty.text()).toContain("[########################] 100%");
  });
});
