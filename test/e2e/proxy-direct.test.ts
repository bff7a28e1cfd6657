import { cpSync, mkdtempSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import type { NodeDetail, NodeSummary } from "../../protocol/nodes.ts";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";
import { patternBody } from "../helpers/pattern-body.ts";

/**
 * Direct nodes end to end: the real control plane and proxy (wrangler dev), a real
 * agent whose tasks listen on 127.0.0.2 (`--task-bind-address`; another loopback
 * address, so a task bound there differs from the default yet nothing leaves this
 * host), the real fixture app, marked and unmarked with the real CLI.
 *
 * The proof that the proxy went direct: the agent process is stopped (SIGSTOP), so
 * its tunnel cannot carry a single byte, while the task process keeps serving.
 * Through the tunnel a request then fails (504 after the 3 s timeout, or 502);
 * only a direct fetch can answer it.
 */

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODE = "dx-1";
const BIND = "127.0.0.2";
const UPLOAD_BYTES = 20 * 1024 * 1024;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  pieces: Buffer[];
}

function send(port: number, host: string, path: string, init: { method?: string; body?: Readable | string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: init.method ?? "GET", headers: { host } }, (res) => {
      const pieces: Buffer[] = [];
      res.on("data", (chunk: Buffer) => pieces.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(pieces), pieces }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (init.body instanceof Readable) init.body.pipe(req);
    else req.end(init.body);
  });
}



describe("direct nodes end to end", () => {
  let plane: LocalControlPlane;
  let agent: RunningAgent;
  let deployment: DeploymentRecord;
  let previewHost: string;
  let port: number;
  const cli = (...args: string[]) => runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config") } });
  const get = (path = "/") => send(port, previewHost, path);

  /** Runs `body` with the agent stopped (its tunnel dead, its task alive), and always lets it go on. */
  async function withAgentStopped<T>(body: () => Promise<T>): Promise<T> {
    process.kill(agent.child.pid as number, "SIGSTOP");
    try {
      return await body();
    } finally {
      process.kill(agent.child.pid as number, "SIGCONT");
    }
  }

  beforeAll(async () => {
    // A request the tunnel cannot carry fails after 3 s instead of 30.
    process.env.PROXY_TIMEOUT_SECONDS = "3";
    plane = await startLocalControlPlane();
    delete process.env.PROXY_TIMEOUT_SECONDS;
    port = plane.proxyPort;
    const created = await cli("node", "token", "create", "--uses", "1", "--auto-approve", "--format", "json");
    expect(created.code, created.stderr).toBe(0);
    const token = (JSON.parse(created.stdout) as { token: string }).token;
    const dir = mkdtempSync(join(tmpdir(), `zectre-${NODE}-`));
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", NODE, "--data-dir", dir]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    agent = startAgent(dir, ["--task-bind-address", BIND]);
    const app = join(mkdtempSync(join(tmpdir(), "zectre-direct-")), "hello");
    cpSync(FIXTURE, app, { recursive: true });
    const deployed = await cli("deploy", app, "--app", "hello", "--health-path", "/healthz", "--format", "json");
    expect(deployed.code, deployed.stderr).toBe(0);
    deployment = (JSON.parse(deployed.stdout) as { deployment: DeploymentRecord }).deployment;
    previewHost = `${deployment.id}.hello.default.localhost:${port}`;
    await eventually(() => get(), (a) => a.status === 200, "the preview URL serving");
  });

  afterAll(async () => {
    if (agent) await agent.stop();
    if (plane) {
      await plane.stop();
      removeControlPlane(plane);
    }
  });

  it("serves through the tunnel before the node is direct, and nothing at all while the agent is stopped", async () => {
    const env = JSON.parse((await get("/env")).body.toString()) as Record<string, string>;
    expect(env.HOST).toBe(BIND);
    const stopped = await withAgentStopped(() => get());
    expect([502, 504]).toContain(stopped.status);
    expect(stopped.headers["x-zectre-proxy-error"]).toBeDefined();
    await eventually(() => get(), (a) => a.status === 200, "the tunnel serving again");
  });

  it("goes on through the tunnel when the direct address cannot be reached, for GET only", async () => {
    // Nothing listens on 127.0.0.3: the direct fetch cannot connect.
    expect((await cli("node", "direct", NODE, "--address", "127.0.0.3")).code).toBe(0);
    await eventually(() => send(port, previewHost, "/upload", { method: "POST", body: "x" }), (a) => a.status === 502, "a POST refused once the new address is used", 20_000);
    const answer = await get();
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe(`hello from ${deployment.id}\n`);
    await eventually(async () => plane.output.some((line) => line.includes("direct fetch failed; trying the tunnel")), Boolean, "the fallback logged", 10_000);
  });

  it("marks the node direct with 'zectre node direct', and shows it in node show and node list", async () => {
    const marked = await cli("node", "direct", NODE, "--address", BIND);
    expect(marked.code, marked.stderr).toBe(0);
    expect(marked.stdout).toBe(`Node '${NODE}' is direct: the proxy fetches its tasks at ${BIND}.\n`);
    const shown = JSON.parse((await cli("node", "show", NODE)).stdout) as NodeDetail;
    expect(shown.directAddress).toBe(BIND);
    const listed = await cli("node", "list");
    expect(listed.stdout).toMatch(/^NODE ID\s+OS\s+ARCH\s+ONLINE\s+LAST-SEEN\s+DIRECT\n/);
    expect(listed.stdout).toContain(BIND);
    const json = JSON.parse((await cli("node", "list", "--format", "json")).stdout) as { nodes: NodeSummary[] };
    expect(json.nodes.map((n) => [n.id, n.directAddress])).toEqual([[NODE, BIND]]);
  });

  it("answers with the agent stopped: the proxy fetched the task itself, with the forwarded headers", async () => {
    await withAgentStopped(async () => {
      const answer = await eventually(() => get(), (a) => a.status === 200, "a direct answer", 20_000);
      expect(answer.body.toString()).toBe(`hello from ${deployment.id}\n`);
      const headers = JSON.parse((await get("/headers")).body.toString()) as Record<string, string>;
      expect(headers["x-forwarded-host"]).toBe(previewHost);
      expect(headers["x-forwarded-proto"]).toBe("http");
      expect(headers["x-forwarded-for"]).toBeTruthy();
      // A Worker's fetch names the node's address as Host; the client's is in X-Forwarded-Host.
      expect(headers.host).toMatch(new RegExp(`^${BIND.replaceAll(".", "\\.")}:\\d+$`));
    });
  });

  it("streams a request body and server-sent events directly", async () => {
    await withAgentStopped(async () => {
      const body = patternBody(UPLOAD_BYTES);
      const uploaded = await send(port, previewHost, "/upload", { method: "POST", body: body.stream });
      expect(uploaded.status).toBe(200);
      expect(JSON.parse(uploaded.body.toString())).toEqual({ bytes: UPLOAD_BYTES, sha256: body.digest() });
      const events = await get("/events");
      expect(events.headers["content-type"]).toBe("text/event-stream");
      // Produced 150 ms apart, they arrive as separate pieces, not as one body at the end.
      expect(events.pieces.length).toBeGreaterThanOrEqual(3);
      expect(events.body.toString().match(/data: tick \d/g)).toEqual(["data: tick 1", "data: tick 2", "data: tick 3", "data: tick 4", "data: tick 5"]);
    });
  });

  it("echoes a WebSocket directly", async () => {
    await withAgentStopped(async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: previewHost } });
      const received: string[] = [];
      ws.on("message", (data: Buffer) => received.push(data.toString()));
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      ws.send("straight to the task");
      await eventually(async () => received.length, (n) => n >= 1, "the echo", 10_000);
      expect(received[0]).toBe("echo: straight to the task");
      const closed = new Promise<number>((resolve) => ws.once("close", (code: number) => resolve(code)));
      ws.close(1000, "done");
      expect(await closed).toBe(1000);
    });
  });

  it("goes back to the tunnel with --off", async () => {
    const off = await cli("node", "direct", NODE, "--off");
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toBe(`Node '${NODE}' is reached through its agent's tunnel.\n`);
    expect((JSON.parse((await cli("node", "show", NODE)).stdout) as NodeDetail).directAddress).toBeNull();
    expect((await cli("node", "list")).stdout).not.toContain("DIRECT");
    // Once the proxy's 2 s cache has let go of the address, a stopped agent means no answer again.
    await withAgentStopped(() => eventually(() => get(), (a) => a.status !== 200, "the tunnel alone serving", 30_000));
    await eventually(() => get(), (a) => a.status === 200, "the tunnel serving again");
  });
});
