import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { FRAME, resetFrame } from "../../protocol/tunnel.ts";
import handler, { handleProxy, type ProxyEnv } from "../../workers/proxy/index.ts";
import { call, createOrg } from "./helpers.ts";
import { answer, openOf, type TunnelAgent, tunnelAgent } from "./tunnel-agent.ts";

/**
 * The proxy Worker's routing and failure answers, run in this workerd against the
 * control plane's objects; test agents answer the tunnel frames by hand.
 */

const proxyEnv = (timeoutSeconds = "2"): ProxyEnv => ({
  ORG: env.ORG,
  APP: env.APP,
  NODE: env.NODE,
  HOST_ROUTES: env.HOST_ROUTES,
  PREVIEW_DOMAIN: "localhost",
  PROXY_TIMEOUT_SECONDS: timeoutSeconds,
});

const appObject = (org: string, app: string) => env.APP.get(env.APP.idFromName(`${org}/${app}`));

function get(host: string, path = "/", init: RequestInit = {}, timeoutSeconds?: string): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("host", host);
  return handleProxy(new Request(`http://${host}${path}`, { ...init, headers }), proxyEnv(timeoutSeconds));
}

async function artifact(org: string) {
  const bytes = new TextEncoder().encode(`code ${Math.random()}`);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  await env.ARTIFACTS.put(`${org}/sha256/${digest}`, bytes);
  return { digest, size: bytes.byteLength, layer: "app" };
}

async function deploy(token: string, org: string, app: string, replicas = 1): Promise<DeploymentRecord> {
  const res = await call<{ deployment: DeploymentRecord }>("POST", `/api/v1/apps/${app}/deployments`, {
    token,
    body: { artifacts: [await artifact(org)], command: "node server.js", replicas },
  });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body.deployment;
}

async function healthy(agent: TunnelAgent, taskId: string, app: string, deploymentId: string, hostPort: number): Promise<void> {
  const id = `s-${taskId}-${Math.random()}`;
  agent.ws.send(JSON.stringify({ type: "task.status", v: 1, id, taskId, app, deploymentId, state: "healthy", hostPort, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() }));
  for (let i = 0; i < 200; i++) {
    if (agent.messages.some((m) => m.type === "ack" && (m.ids as string[]).includes(id))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("task.status not acked");
}

/** An org with app `web`, one deployment and `nodes.length` healthy tasks, one per node. */
async function served(nodes: string[] = ["web-1"], app = "web") {
  const org = await createOrg("px");
  expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: app } })).status).toBe(201);
  const agents = [];
  for (const nodeId of nodes) agents.push(await tunnelAgent(org.adminToken, org.name, nodeId));
  const deployment = await deploy(org.adminToken, org.name, app, nodes.length);
  const tasks = await appObject(org.name, app).assignTasks(deployment.id, nodes);
  for (const [i, taskId] of tasks.entries()) await healthy(agents[i] as TunnelAgent, taskId, app, deployment.id, 41000 + i);
  const previewHost = `${deployment.id}.${app}.${org.name}.localhost:47000`;
  return { org, agents, deployment, tasks, previewHost, appHost: `${app}.${org.name}.localhost:47000` };
}

/** Answers every OPEN the agent gets with the path, until stopped. */
function autoAnswer(agent: TunnelAgent, body: (path: string) => string = (path) => `${agent.nodeId} ${path}`): () => void {
  let seen = 0;
  const timer = setInterval(() => {
    for (const frame of agent.frames.slice(seen)) {
      if (frame.type === FRAME.open) answer(agent, frame.streamId, 200, body(openOf(frame).path), [["content-type", "text/plain"]]);
    }
    seen = agent.frames.length;
  }, 5);
  return () => clearInterval(timer);
}

describe("proxy routing", () => {
  it("serves a preview host through the tunnel, with X-Forwarded-* set and hop-by-hop fields dropped", async () => {
    const { agents, tasks, previewHost } = await served();
    const agent = agents[0] as TunnelAgent;
    const pending = get(previewHost, "/hello?q=1", { headers: { "x-forwarded-for": "6.6.6.6", connection: "close", te: "trailers", accept: "text/plain" } });
    const frame = await agent.frame(FRAME.open);
    const open = openOf(frame);
    expect(open).toMatchObject({ method: "GET", path: "/hello?q=1", taskId: tasks[0], port: 41000 });
    const headers = new Map(open.headers);
    expect(headers.get("x-forwarded-for")).not.toBe("6.6.6.6");
    expect(headers.get("x-forwarded-proto")).toBe("http");
    expect(headers.get("x-forwarded-host")).toBe(previewHost);
    expect(headers.get("accept")).toBe("text/plain");
    expect(headers.has("te")).toBe(false);
    expect(headers.has("connection")).toBe(false);
    answer(agent, frame.streamId, 200, "from the app", [["x-app", "1"]]);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.headers.get("x-app")).toBe("1");
    expect(await res.text()).toBe("from the app");
  });

  it("serves the app host from the promoted deployment", async () => {
    const { agents, appHost } = await served();
    const stop = autoAnswer(agents[0] as TunnelAgent);
    const res = await get(appHost, "/main");
    stop();
    expect(await res.text()).toBe("web-1 /main");
  });

  it("goes round robin over healthy tasks", async () => {
    const { agents, previewHost } = await served(["web-1", "web-2"]);
    const stops = agents.map((a) => autoAnswer(a));
    const bodies = [];
    for (let i = 0; i < 4; i++) bodies.push(await (await get(previewHost, "/")).text());
    for (const stop of stops) stop();
    expect(bodies.filter((b) => b.startsWith("web-1"))).toHaveLength(2);
    expect(bodies.filter((b) => b.startsWith("web-2"))).toHaveLength(2);
    expect(bodies[0]).not.toBe(bodies[1]);
  });

  it("retries a safe request on another task when a node's agent is gone, but not a POST", async () => {
    const { agents, previewHost } = await served(["web-1", "web-2"]);
    (agents[0] as TunnelAgent).ws.close(1000, "gone");
    await (agents[0] as TunnelAgent).closed;
    const stop = autoAnswer(agents[1] as TunnelAgent);
    const gets = [];
    for (let i = 0; i < 4; i++) gets.push(await get(previewHost, "/"));
    const posts = [];
    for (let i = 0; i < 4; i++) posts.push(await get(previewHost, "/", { method: "POST", body: "x" }));
    stop();
    expect(gets.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    for (const r of gets) expect(await r.text()).toMatch(/^web-2/);
    // Round robin sends two of four POSTs to the dead node first; they are not replayed.
    expect(posts.map((r) => r.status).sort()).toEqual([200, 200, 502, 502]);
  });

  it("answers 404 for unknown hosts, deployments and other tenants' apps, in one line", async () => {
    const a = await served();
    const b = await served();
    const unknownHost = await get("nothing.example.org");
    expect(unknownHost.status).toBe(404);
    const text = await unknownHost.text();
    expect(text.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(text)).toEqual({ error: { code: "not_found", message: "no app or deployment is served at 'nothing.example.org'" } });
    expect((await get(`d000000000000.web.${a.org.name}.localhost`)).status).toBe(404);
    expect((await get(`web.no-such-org-zz.localhost`)).status).toBe(404);
    // A's deployment under B's org name: B's app has no such deployment, so nothing of A's is reachable.
    expect((await get(`${a.deployment.id}.web.${b.org.name}.localhost`)).status).toBe(404);
    expect(a.agents[0]?.frames.filter((f) => f.type === FRAME.open)).toHaveLength(0);
    expect(b.agents[0]?.frames.filter((f) => f.type === FRAME.open)).toHaveLength(0);
  });

  it("answers 503 with Retry-After when the deployment has no healthy task", async () => {
    const org = await createOrg("px");
    await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } });
    const deployment = await deploy(org.adminToken, org.name, "web");
    const res = await get(`${deployment.id}.web.${org.name}.localhost`);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toEqual({
      code: "unavailable",
      message: `deployment ${deployment.id} has no healthy task; try again shortly`,
    });
    expect((await get(`web.${org.name}.localhost`)).status).toBe(503);
  });

  it("answers 504 when the app does not start its response within the timeout", async () => {
    const { agents, previewHost } = await served();
    const res = await get(previewHost, "/slow", {}, "1");
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("timeout");
    expect(agents[0]?.frames.some((f) => f.type === FRAME.reset)).toBe(true);
  });

  it("answers 502 when the agent refuses the port", async () => {
    const { agents, previewHost } = await served();
    const agent = agents[0] as TunnelAgent;
    const pending = get(previewHost, "/", { method: "POST", body: "x" });
    const open = await agent.frame(FRAME.open);
    agent.send(resetFrame(open.streamId, "refused", "not a task's port"));
    expect((await pending).status).toBe(502);
  });
});

describe("proxy request checks", () => {
  it("refuses Content-Length with Transfer-Encoding, a repeated Content-Length and a header flood before any app sees them", async () => {
    const { agents, previewHost } = await served();
    const both = await get(previewHost, "/", { method: "POST", body: "abc", headers: { "content-length": "3", "transfer-encoding": "chunked" } });
    expect(both.status).toBe(400);
    const headers = new Headers();
    headers.append("content-length", "3");
    headers.append("content-length", "3");
    const twice = await get(previewHost, "/", { method: "POST", body: "abc", headers });
    expect(twice.status).toBe(400);
    const flood = new Headers();
    for (let i = 0; i < 120; i++) flood.set(`x-h-${i}`, "1");
    const flooded = await get(previewHost, "/", { headers: flood });
    expect(flooded.status).toBe(431);
    expect(agents[0]?.frames.filter((f) => f.type === FRAME.open)).toHaveLength(0);
  });

  it("the API Worker never hands outside requests to a node's tunnel", async () => {
    const { org, agents, tasks } = await served();
    const path = `/__zectre/tunnel/${tasks[0]}?app=web&port=41000&timeout=1000&path=%2F`;
    expect((await call("GET", path, { token: org.adminToken })).status).toBe(404);
    const connect = await call("GET", `/api/v1/agent/connect?org=${org.name}&node=web-1&nonce=x&sig=y&path=/__zectre/tunnel/${tasks[0]}`, { headers: { upgrade: "websocket" } });
    expect(connect.status).toBe(401);
    expect(agents[0]?.frames.filter((f) => f.type === FRAME.open)).toHaveLength(0);
  });

  it("answers /healthz on the bare proxy domain", async () => {
    const res = await handler.fetch(new Request("http://localhost:47000/healthz"), proxyEnv());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, component: "proxy" });
  });
});

describe("custom host routes", () => {
  it("routes a custom host to the app's promoted deployment; list, conflicts, reserved names and removal", async () => {
    const { org, agents } = await served();
    const host = `www-${org.name}.example.com`;
    const added = await call("POST", "/api/v1/apps/web/routes", { token: org.adminToken, body: { host: host.toUpperCase() } });
    expect(added.status).toBe(201);
    expect(added.body.route).toMatchObject({ host, org: org.name, app: "web" });
    expect((await call("POST", "/api/v1/apps/web/routes", { token: org.adminToken, body: { host } })).status).toBe(200);
    const listed = await call<{ routes: Array<{ host: string }> }>("GET", "/api/v1/apps/web/routes", { token: org.adminToken });
    expect(listed.body.routes.map((r) => r.host)).toEqual([host]);

    const stop = autoAnswer(agents[0] as TunnelAgent);
    const res = await get(host, "/custom");
    expect(await res.text()).toBe("web-1 /custom");

    // Another tenant cannot take it, nor can anyone route the proxy's own names or nonsense.
    const other = await served();
    expect((await call("POST", "/api/v1/apps/web/routes", { token: other.org.adminToken, body: { host } })).status).toBe(409);
    expect((await call("POST", "/api/v1/apps/web/routes", { token: org.adminToken, body: { host: `web.${other.org.name}.localhost` } })).status).toBe(400);
    expect((await call("POST", "/api/v1/apps/web/routes", { token: org.adminToken, body: { host: "http://x.com/" } })).status).toBe(400);
    expect((await call("POST", "/api/v1/apps/nope/routes", { token: org.adminToken, body: { host: "a.example.com" } })).status).toBe(404);

    expect((await call("DELETE", `/api/v1/apps/web/routes/${host}`, { token: other.org.adminToken })).status).toBe(404);
    expect((await call("DELETE", `/api/v1/apps/web/routes/${host}`, { token: org.adminToken })).status).toBe(200);
    expect((await call<{ routes: unknown[] }>("GET", "/api/v1/apps/web/routes", { token: org.adminToken })).body.routes).toEqual([]);
    // The proxy's cache may serve the old answer for at most 2 s.
    await new Promise((r) => setTimeout(r, 2_100));
    expect((await get(host, "/custom")).status).toBe(404);
    stop();
  });
});
