import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { directTaskUrl, parseDirectAddress } from "../../protocol/direct.ts";
import type { AuditEntry } from "../../protocol/events.ts";
import type { NodeDetail, NodeSummary } from "../../protocol/nodes.ts";
import { FRAME } from "../../protocol/tunnel.ts";
import { handleProxy, type ProxyEnv } from "../../workers/proxy/index.ts";
import { onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";
import { answer, openOf, type TunnelAgent, tunnelAgent } from "./tunnel-agent.ts";

/**
 * Direct nodes: the API that marks them (admin only, validated, audited), the
 * org's directory that keeps the address, and the proxy's use of it: addresses
 * come from the host's own org only, and a direct fetch that cannot connect goes
 * on through the tunnel for safe methods only. The direct fetch itself reaching a
 * real app is proven end to end in test/e2e/proxy-direct.test.ts.
 */

const orgObject = (org: string) => env.ORG.get(env.ORG.idFromName(org));
/** RFC 6761: `.invalid` never resolves, so a direct fetch there fails at once, before reaching anything. */
const NOWHERE = "direct-node.invalid";

const setDirect = (token: string, nodeId: string, body: unknown) => call<{ node: NodeSummary }>("PUT", `/api/v1/nodes/${nodeId}/direct`, { token, body });
const nodeOf = async (token: string, nodeId: string) => (await call<{ node: NodeDetail }>("GET", `/api/v1/nodes/${nodeId}`, { token })).body.node;

describe("direct addresses: what is accepted", () => {
  it("keeps host names in lower case and IPv6 compressed without brackets", () => {
    expect(parseDirectAddress("10.0.0.5")).toEqual({ ok: true, address: "10.0.0.5" });
    expect(parseDirectAddress(" Node-1.Example.COM ")).toEqual({ ok: true, address: "node-1.example.com" });
    expect(parseDirectAddress("[FD00:0:0::5]")).toEqual({ ok: true, address: "fd00::5" });
    expect(parseDirectAddress("::1")).toEqual({ ok: true, address: "::1" });
    expect(parseDirectAddress("localhost")).toEqual({ ok: true, address: "localhost" });
  });

  it("refuses schemes, ports, paths, numbers URL parsers would reinterpret, and addresses no host serves from", () => {
    const refused = [
      "", "http://10.0.0.5", "10.0.0.5:8080", "10.0.0.5/x", "web 1", "user@host", "-a.example", "a..b", "a.example.",
      `${"a".repeat(64)}.example`, `${"abcdefgh.".repeat(32)}example`, "10.1", "0x7f000001", "010.0.0.1", "256.1.1.1",
      "0.0.0.0", "169.254.169.254", "224.0.0.1", "255.255.255.255", "::", "fe80::1", "ff02::1", "::ffff:10.0.0.5", "[::1]:80", "1::2::3",
    ];
    for (const input of refused) expect(parseDirectAddress(input), input).toMatchObject({ ok: false });
  });
});

describe("the URL the proxy fetches", () => {
  it("is the stored address, the task's port and the request's path, nothing else", () => {
    expect(directTaskUrl("10.0.0.5", 41234, "/a/b?c=d")).toBe("http://10.0.0.5:41234/a/b?c=d");
    expect(directTaskUrl("fd00::5", 41234, "/")).toBe("http://[fd00::5]:41234/");
    expect(directTaskUrl("web-1.internal", 80, "/x")).toBe("http://web-1.internal:80/x");
    // A path that looks like an authority stays a path on the same host and port.
    const sneaky = directTaskUrl("10.0.0.5", 41234, "//evil.example/x") as string;
    expect(new URL(sneaky).host).toBe("10.0.0.5:41234");
    expect(new URL(sneaky).pathname).toBe("//evil.example/x");
    expect(new URL(directTaskUrl("10.0.0.5", 41234, "/@evil.example:80/") as string).host).toBe("10.0.0.5:41234");
  });

  it("is refused for an address not in its stored form, a bad port or a path that is not one", () => {
    expect(directTaskUrl("10.0.0.5:80", 41234, "/")).toBeNull();
    expect(directTaskUrl("Web.Internal", 41234, "/")).toBeNull();
    expect(directTaskUrl("169.254.169.254", 80, "/")).toBeNull();
    expect(directTaskUrl("10.0.0.5", 0, "/")).toBeNull();
    expect(directTaskUrl("10.0.0.5", 70000, "/")).toBeNull();
    expect(directTaskUrl("10.0.0.5", 41234, "@evil.example/")).toBeNull();
  });
});

describe("PUT /api/v1/nodes/:id/direct", () => {
  it("marks a node direct, shows it in the node's detail and the list, and turns it off with null", async () => {
    const { name, adminToken } = await createOrg("dn");
    await onlineAgent(adminToken, name, "dn-1");
    await onlineAgent(adminToken, name, "dn-2");
    const marked = await setDirect(adminToken, "dn-1", { address: "Web-1.Internal" });
    expect(marked.status).toBe(200);
    expect(marked.body.node).toMatchObject({ id: "dn-1", directAddress: "web-1.internal" });
    expect((await nodeOf(adminToken, "dn-1")).directAddress).toBe("web-1.internal");
    const list = await call<{ nodes: NodeSummary[] }>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes.map((n) => [n.id, n.directAddress])).toEqual([["dn-1", "web-1.internal"], ["dn-2", null]]);
    expect(await orgObject(name).directNodes()).toEqual({ "dn-1": "web-1.internal" });

    const off = await setDirect(adminToken, "dn-1", { address: null });
    expect(off.status).toBe(200);
    expect(off.body.node.directAddress).toBeNull();
    expect(await orgObject(name).directNodes()).toEqual({});
  });

  it("refuses bad bodies with 400 and changes nothing", async () => {
    const { name, adminToken } = await createOrg("dn");
    await onlineAgent(adminToken, name, "dn-1");
    expect((await setDirect(adminToken, "dn-1", { address: "10.0.0.5" })).status).toBe(200);
    const bodies = [{ address: "http://10.0.0.5" }, { address: "10.0.0.6:8080" }, { address: "169.254.169.254" }, { address: 5 }, {}, { address: "10.0.0.6", port: 80 }];
    for (const body of bodies) {
      const res = await call<{ error: { code: string; message: string } }>("PUT", "/api/v1/nodes/dn-1/direct", { token: adminToken, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe("invalid_body");
    }
    const port = await call<{ error: { message: string } }>("PUT", "/api/v1/nodes/dn-1/direct", { token: adminToken, body: { address: "10.0.0.6:8080" } });
    expect(port.body.error.message).toContain("each task has its own");
    expect((await call("PUT", "/api/v1/nodes/dn-1/direct", { token: adminToken, rawBody: "{not json" })).status).toBe(400);
    expect((await nodeOf(adminToken, "dn-1")).directAddress).toBe("10.0.0.5");
  });

  it("needs the admin scope, answers 404 for unknown and other tenants' nodes, and 409 for a revoked one", async () => {
    const a = await createOrg("dn");
    const b = await createOrg("dn");
    await onlineAgent(a.adminToken, a.name, "dn-1");
    const operator = await createToken(a.adminToken, "ops", "operate");
    expect((await setDirect(operator, "dn-1", { address: "10.0.0.5" })).status).toBe(403);
    expect((await setDirect(a.adminToken, "ghost", { address: "10.0.0.5" })).status).toBe(404);
    expect((await setDirect(b.adminToken, "dn-1", { address: "10.0.0.5" })).status).toBe(404);
    expect((await nodeOf(a.adminToken, "dn-1")).directAddress).toBeNull();

    expect((await setDirect(a.adminToken, "dn-1", { address: "10.0.0.5" })).status).toBe(200);
    expect((await call("POST", "/api/v1/nodes/dn-1/revoke", { token: a.adminToken })).status).toBe(200);
    // A revoked node serves nothing: the proxy no longer uses its address, and it cannot be given a new one.
    expect(await orgObject(a.name).directNodes()).toEqual({});
    expect((await setDirect(a.adminToken, "dn-1", { address: "10.0.0.6" })).status).toBe(409);
    expect((await setDirect(a.adminToken, "dn-1", { address: null })).status).toBe(200);
  });

  it("is recorded in the audit log by the API's middleware", async () => {
    const { name, adminToken } = await createOrg("dn");
    await onlineAgent(adminToken, name, "dn-1");
    await setDirect(adminToken, "dn-1", { address: "10.0.0.5" });
    await setDirect(adminToken, "dn-1", { address: "http://x" });
    const entries = (await call<{ entries: AuditEntry[] }>("GET", "/api/v1/audit", { token: adminToken })).body.entries;
    expect(entries.slice(0, 2)).toMatchObject([
      { action: "PUT /nodes/:id/direct", target: "dn-1", status: 400, details: { error: "invalid_body" } },
      { action: "PUT /nodes/:id/direct", target: "dn-1", status: 200 },
    ]);
  });
});

// ---- the proxy ----

const proxyEnv: ProxyEnv = { ORG: env.ORG, APP: env.APP, NODE: env.NODE, HOST_ROUTES: env.HOST_ROUTES, PREVIEW_DOMAIN: "localhost", PROXY_TIMEOUT_SECONDS: "5" };

function request(host: string, path: string, init: RequestInit = {}): Promise<Response> {
  return handleProxy(new Request(`http://${host}${path}`, { ...init, headers: { host } }), proxyEnv);
}

async function artifact(org: string) {
  const bytes = new TextEncoder().encode(`code ${Math.random()}`);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  await env.ARTIFACTS.put(`${org}/sha256/${digest}`, bytes);
  return { digest, size: bytes.byteLength, layer: "app" };
}

/** An org with app `web` served by one healthy task on node `web-1`, whose agent answers tunnel requests by hand. */
async function servedApp(): Promise<{ org: string; token: string; agent: TunnelAgent; host: string }> {
  const { name: org, adminToken: token } = await createOrg("dp");
  expect((await call("POST", "/api/v1/apps", { token, body: { name: "web" } })).status).toBe(201);
  const agent = await tunnelAgent(token, org, "web-1");
  const created = await call<{ deployment: DeploymentRecord }>("POST", "/api/v1/apps/web/deployments", {
    token,
    body: { artifacts: [await artifact(org)], command: "node server.js", replicas: 1 },
  });
  const deploymentId = created.body.deployment.id;
  const [taskId] = await env.APP.get(env.APP.idFromName(`${org}/web`)).assignTasks(deploymentId, ["web-1"]);
  const id = `healthy-${Math.random()}`;
  agent.ws.send(JSON.stringify({ type: "task.status", v: 1, id, taskId, app: "web", deploymentId, state: "healthy", hostPort: 41000, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() }));
  for (let i = 0; i < 200 && !agent.messages.some((m) => m.type === "ack" && (m.ids as string[]).includes(id)); i++) await new Promise((r) => setTimeout(r, 10));
  return { org, token, agent, host: `${deploymentId}.web.${org}.localhost:47000` };
}

/** Sends the request and answers its tunnel stream (if one opens) with `body`; how many streams opened is returned too. */
async function throughProxy(app: { agent: TunnelAgent; host: string }, init: RequestInit, body: string): Promise<{ response: Response; opened: number }> {
  const before = app.agent.frames.filter((f) => f.type === FRAME.open).length;
  let answering = true;
  const answerer = (async () => {
    while (answering) {
      const opens = app.agent.frames.filter((f) => f.type === FRAME.open);
      for (const frame of opens.slice(before)) if (openOf(frame).path === "/where") answer(app.agent, frame.streamId, 200, body);
      if (opens.length > before) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const response = await request(app.host, "/where", init);
  answering = false;
  await answerer;
  return { response, opened: app.agent.frames.filter((f) => f.type === FRAME.open).length - before };
}

describe("the proxy and direct nodes", () => {
  it("goes on through the tunnel when a direct node cannot be reached, for safe methods only", async () => {
    const app = await servedApp();
    expect((await setDirect(app.token, "web-1", { address: NOWHERE })).status).toBe(200);
    const got = await throughProxy(app, {}, "via the tunnel");
    expect(got.response.status).toBe(200);
    expect(await got.response.text()).toBe("via the tunnel");
    expect(got.opened).toBe(1);
    // A POST may already have reached the app when the connection broke: it is never sent a second way.
    const posted = await throughProxy(app, { method: "POST", body: "x" }, "must not be reached");
    expect(posted.response.status).toBe(502);
    expect((await posted.response.json()) as unknown).toEqual({ error: { code: "bad_gateway", message: "the app's task could not be reached at its node's direct address" } });
    expect(posted.opened).toBe(0);
  });

  it("takes direct addresses only from the host's own org", async () => {
    const marked = await servedApp();
    const other = await servedApp();
    // Both orgs have a node called web-1; only the first org's is direct.
    expect((await setDirect(marked.token, "web-1", { address: NOWHERE })).status).toBe(200);
    const posted = await throughProxy(other, { method: "POST", body: "x" }, "the other org's tunnel");
    expect(posted.response.status).toBe(200);
    expect(await posted.response.text()).toBe("the other org's tunnel");
    expect((await throughProxy(marked, { method: "POST", body: "x" }, "unused")).response.status).toBe(502);
  });
});
