import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { DeploymentRecord, TaskRecord } from "../../protocol/deployments.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";
import { patternBody } from "../helpers/pattern-body.ts";

/**
 * The edge proxy end to end: the real control plane and proxy (wrangler dev), real
 * agents running the real fixture app, requests to 127.0.0.1:<proxy port> with the
 * preview host in the Host header (Node does not resolve *.localhost; browsers do).
 */

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODES = ["px-a", "px-b"];
const BIG_BYTES = 100 * 1024 * 1024;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Body pieces as they arrived. */
  pieces: Buffer[];
  /** True when the connection broke before the response was complete. */
  aborted: boolean;
}

/** One HTTP request to the proxy with `host` as the Host header; the body may be a stream. */
function send(port: number, host: string, path: string, init: { method?: string; body?: Readable | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: init.method ?? "GET", headers: { host, ...init.headers } }, (res) => {
      const pieces: Buffer[] = [];
      let aborted = false;
      res.on("data", (chunk: Buffer) => pieces.push(chunk));
      res.on("aborted", () => (aborted = true));
      res.on("error", () => (aborted = true));
      res.on("close", () => {
        const complete = res.complete && !aborted;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(pieces), pieces, aborted: !complete });
      });
    });
    req.on("error", reject);
    if (init.body instanceof Readable) init.body.pipe(req);
    else req.end(init.body);
  });
}

/** A GET whose body is hashed as it arrives rather than kept. */
function download(port: number, host: string, path: string): Promise<{ status: number; headers: Answer["headers"]; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, sha256: hash.digest("hex") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}


/** A raw HTTP/1.1 request on a fresh socket (send `Connection: close`): the status and the text after the head. */
function raw(port: number, text: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => socket.write(text));
    let answer = "";
    socket.on("data", (chunk) => (answer += chunk.toString("latin1")));
    const done = () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? "0");
      resolve({ status, body: answer.slice(answer.indexOf("\r\n\r\n") + 4).trim() });
    };
    socket.on("error", done);
    socket.on("close", done);
  });
}

/** The process's peak resident set size so far, in KiB (Linux). */
function peakRssKb(pid: number | undefined): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "0");
}


describe("edge proxy end to end", () => {
  let fleet: Fleet;
  let deployment: DeploymentRecord;
  let previewHost: string;
  let appHost: string;
  let port: number;
  let peaksBefore: number[] = [];
  const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });
  const read = async (id: string) => (await fleet.api("GET", `/api/v1/deployments/${id}`)).body.deployment as DeploymentRecord;
  const healthyTasks = (d: DeploymentRecord): TaskRecord[] => d.tasks.filter((t) => t.desired === "run" && t.state === "healthy");

  beforeAll(async () => {
    // 504 after 3 s instead of 30.
    process.env.PROXY_TIMEOUT_SECONDS = "3";
    fleet = await startFleet(NODES, { heartbeatSeconds: 1 });
    delete process.env.PROXY_TIMEOUT_SECONDS;
    port = fleet.plane.proxyPort;
    for (const id of NODES) await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${id}`)).body, (b) => (b.node as { online?: boolean })?.online === true, `${id} online`);
    const dir = join(mkdtempSync(join(tmpdir(), "zectre-proxy-")), "hello");
    cpSync(FIXTURE, dir, { recursive: true });
    const res = await cli("deploy", dir, "--app", "hello", "--replicas", "2", "--health-path", "/healthz", "--format", "json");
    if (res.code !== 0) throw new Error(res.stderr);
    deployment = (JSON.parse(res.stdout) as { deployment: DeploymentRecord }).deployment;
    deployment = await eventually(() => read(deployment.id), (d) => healthyTasks(d).length === 2, "two healthy tasks");
    previewHost = `${deployment.id}.hello.default.localhost:${port}`;
    appHost = `hello.default.localhost:${port}`;
    // The app URL serves the promoted deployment once the promotion landed.
    await eventually(() => send(port, appHost, "/"), (a) => a.status === 200, "the app URL serving");
    peaksBefore = fleet.agents.map((agent) => peakRssKb(agent.child.pid));
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it("answers a GET at the preview URL and the app URL through the agent's tunnel", async () => {
    const preview = await send(port, previewHost, "/");
    expect(preview.status).toBe(200);
    expect(preview.body.toString()).toBe(`hello from ${deployment.id}\n`);
    const main = await send(port, appHost, "/");
    expect(main.body.toString()).toBe(`hello from ${deployment.id}\n`);
    const env = JSON.parse((await send(port, previewHost, "/env")).body.toString()) as Record<string, string>;
    expect(env.ZECTRE_DEPLOYMENT).toBe(deployment.id);
  });

  it("sets X-Forwarded-For/Proto/Host for the app and drops hop-by-hop fields", async () => {
    const res = await send(port, previewHost, "/headers", { headers: { "x-forwarded-for": "6.6.6.6", "x-custom": "kept", "keep-alive": "timeout=5" } });
    const headers = JSON.parse(res.body.toString()) as Record<string, string>;
    expect(headers["x-forwarded-for"]).not.toContain("6.6.6.6");
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers["x-forwarded-host"]).toBe(previewHost);
    expect(headers.host).toBe(previewHost);
    expect(headers["x-custom"]).toBe("kept");
    expect(headers["keep-alive"]).toBeUndefined();
  });

  it("streams a 100 MB POST body to the app, every byte arriving", async () => {
    const body = patternBody(BIG_BYTES);
    const res = await send(port, previewHost, "/upload", { method: "POST", body: body.stream, headers: { "content-type": "application/octet-stream" } });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ bytes: BIG_BYTES, sha256: body.digest() });
  });

  it("streams a 100 MB response body to the client, every byte arriving", async () => {
    const expected = createHash("sha256");
    const block = Buffer.alloc(256 * 1024);
    for (let i = 0; i < block.length; i++) block[i] = (i * 7 + 3) % 256;
    for (let sent = 0; sent < BIG_BYTES; sent += block.length) expected.update(block.subarray(0, Math.min(block.length, BIG_BYTES - sent)));
    const res = await download(port, previewHost, `/download?bytes=${BIG_BYTES}`);
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(BIG_BYTES));
    expect(res.bytes).toBe(BIG_BYTES);
    expect(res.sha256).toBe(expected.digest("hex"));
  });

  it("moved both 100 MB bodies through the agents with bounded memory", () => {
    // Had either agent held a whole body, its peak resident size would have grown by 100 MB or more.
    const growth = fleet.agents.map((agent, i) => peakRssKb(agent.child.pid) - (peaksBefore[i] ?? 0));
    expect(Math.max(...growth)).toBeLessThan(50 * 1024);
  });

  it("streams a chunked response and server-sent events as they are produced", async () => {
    const chunked = await send(port, previewHost, "/stream");
    expect(chunked.body.toString()).toBe("piece 1\npiece 2\npiece 3\npiece 4\npiece 5\n");
    // Produced 150 ms apart, they arrive as separate pieces, the first before the rest exists.
    expect(chunked.pieces.length).toBeGreaterThanOrEqual(3);
    expect(chunked.pieces[0]?.toString()).toBe("piece 1\n");
    const events = await send(port, previewHost, "/events");
    expect(events.headers["content-type"]).toBe("text/event-stream");
    expect(events.pieces.length).toBeGreaterThanOrEqual(3);
    expect(events.pieces[0]?.toString()).toBe("id: 1\ndata: tick 1\n\n");
    expect(events.body.toString().match(/data: tick \d/g)).toEqual(["data: tick 1", "data: tick 2", "data: tick 3", "data: tick 4", "data: tick 5"]);
  });

  it("echoes WebSocket messages end to end", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: previewHost } });
    const received: Array<{ binary: boolean; data: Buffer }> = [];
    ws.on("message", (data: Buffer, binary: boolean) => received.push({ binary, data }));
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.send("hello over the tunnel");
    ws.send(Buffer.from([1, 2, 3, 4]));
    await eventually(async () => received.length, (n) => n >= 2, "two echoes", 10_000);
    expect(received[0]).toEqual({ binary: false, data: Buffer.from("echo: hello over the tunnel") });
    expect(received[1]).toEqual({ binary: true, data: Buffer.from([1, 2, 3, 4]) });
    const closed = new Promise<number>((resolve) => ws.once("close", (code: number) => resolve(code)));
    ws.close(1000, "done");
    expect(await closed).toBe(1000);
  });

  it("carries 20 concurrent requests over the agents' sockets", async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => send(port, previewHost, i % 2 === 0 ? "/" : "/healthz")));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(answers.map((a) => a.body.toString())).toEqual(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? `hello from ${deployment.id}\n` : "ok\n")));
  });

  it("aborts the response when the app crashes mid-request, never ending it short as if complete", async () => {
    const res = await send(port, previewHost, "/crash-mid");
    expect(res.status).toBe(200);
    expect(res.aborted).toBe(true);
    expect(res.body.length).toBeLessThan(1000);
    // The supervisor restarts it; the proxy serves again once it is healthy.
    await eventually(() => read(deployment.id), (d) => healthyTasks(d).length === 2, "both tasks healthy again");
    await eventually(() => send(port, previewHost, "/"), (a) => a.status === 200, "serving again");
  });

  it("answers 504 when the app is slower than the timeout", async () => {
    const res = await send(port, previewHost, "/slow?ms=8000");
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body.toString()).error.code).toBe("timeout");
  });

  it("answers 404 in one line for unknown hosts and other tenants' names", async () => {
    const unknown = await send(port, `nothing.default.localhost:${port}`, "/");
    expect(unknown.status).toBe(404);
    expect(unknown.body.toString().trim().split("\n")).toHaveLength(1);
    expect((await send(port, `${deployment.id}.hello.other-org.localhost:${port}`, "/")).status).toBe(404);
    expect((await send(port, "www.not-routed.test", "/")).status).toBe(404);
  });

  it("never lets a request framed two ways reach the app ambiguously", async () => {
    // wrangler's dev server and workerd parse first: Content-Length with Transfer-Encoding arrives framed by
    // Transfer-Encoding alone (here an empty chunked body, so the app counts 0 bytes, not the 5 Content-Length
    // claims); the proxy's own refusal of both together is covered in test/workers/proxy.test.ts.
    const both = await raw(port, `POST /upload HTTP/1.1\r\nHost: ${previewHost}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`);
    expect(both.status === 400 || both.body.includes('{"bytes":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}')).toBe(true);
    const twice = await raw(port, `POST /upload HTTP/1.1\r\nHost: ${previewHost}\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!`);
    expect(twice.status).toBe(400);
    const flood = Array.from({ length: 150 }, (_, i) => `X-Flood-${i}: 1\r\n`).join("");
    const flooded = await raw(port, `GET /headers HTTP/1.1\r\nHost: ${previewHost}\r\nConnection: close\r\n${flood}\r\n`);
    expect([400, 431]).toContain(flooded.status);
  });

  it("serves a custom host name added with 'zectre route add', and stops after 'route remove'", async () => {
    const added = await cli("route", "add", "hello", "www.e2e-proxy.test");
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain("www.e2e-proxy.test now serves app hello");
    const listed = await cli("route", "list", "hello", "--format", "json");
    expect((JSON.parse(listed.stdout) as { routes: Array<{ host: string }> }).routes.map((r) => r.host)).toEqual(["www.e2e-proxy.test"]);
    const res = await send(port, "www.e2e-proxy.test", "/");
    expect(res.body.toString()).toBe(`hello from ${deployment.id}\n`);
    expect((await cli("route", "remove", "hello", "www.e2e-proxy.test")).code).toBe(0);
    await eventually(() => send(port, "www.e2e-proxy.test", "/"), (a) => a.status === 404, "the removed route gone", 10_000);
  });

  it("answers 503 with Retry-After when the deployment has no healthy task", async () => {
    expect((await cli("scale", "hello", "0")).code).toBe(0);
    const res = await eventually(() => send(port, previewHost, "/"), (a) => a.status === 503, "503 once scaled to zero", 30_000);
    expect(res.headers["retry-after"]).toBe("5");
    expect(JSON.parse(res.body.toString()).error.code).toBe("unavailable");
  });
});
