import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { NewOrgEvent, OrgEvent } from "../../protocol/events.ts";
import { type AgentSocket, onlineAgent } from "./agent-helpers.ts";
import { openEvents, subscribe, subscriberOf } from "./events-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

const orgObject = (org: string) => env.ORG.get(env.ORG.idFromName(org));
const types = (events: OrgEvent[]) => events.map((e) => e.type);

/** Acks the job's dispatch and sends a successful return, as a real agent would. */
async function answerPing(socket: AgentSocket, jid: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const dispatch = socket.messages.find((m) => m.type === "action" && (m.action as { jid?: string }).jid === jid);
    if (dispatch) {
      socket.send({ type: "ack", v: 1, ids: [dispatch.id] });
      socket.send({ type: "return", v: 1, id: `r-${jid}`, jid, epoch: 1, return: { success: true, retcode: 0, result: true, error: null, durationMs: 1, startedAt: null } });
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no dispatch for ${jid}`);
}

async function runPing(token: string, target: string): Promise<string> {
  const res = await call<{ jid: string }>("POST", "/api/v1/jobs", { token, body: { target, function: "test.ping" } });
  expect(res.status).toBe(202);
  return res.body.jid;
}

function sample(n: number, from = 0): NewOrgEvent[] {
  return Array.from({ length: n }, (_, i) => ({ ts: new Date().toISOString(), type: "node.online" as const, data: { nodeId: `n-${from + i}` } }));
}

describe("org events: producers", () => {
  it("streams node.online, then job.created, job.return and job.finished for a ping, in order and with their data", async () => {
    const { name, adminToken } = await createOrg("ev");
    const sub = await subscribe({ token: adminToken });
    expect(await sub.ready()).toBe(0);
    const { socket } = await onlineAgent(adminToken, name, "ev-1");
    const [online] = await sub.waitFor((e) => e.length >= 1, "node.online");
    expect(online).toMatchObject({ id: 1, type: "node.online", data: { nodeId: "ev-1" } });
    expect(Date.parse(online?.ts ?? "")).not.toBeNaN();

    const jid = await runPing(adminToken, "ev-*");
    await answerPing(socket, jid);
    const events = await sub.waitFor((e) => e.some((x) => x.type === "job.finished"), "job.finished");
    expect(types(events)).toEqual(["node.online", "job.created", "job.return", "job.finished"]);
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4]);
    expect(events[1]?.data).toEqual({ jid, function: "test.ping", target: "ev-*", targets: 1, user: "admin" });
    expect(events[2]?.data).toEqual({ jid, nodeId: "ev-1", success: true, synthetic: false });
    expect(events[3]?.data).toMatchObject({ jid, status: "complete", counts: { targets: 1, succeeded: 1 } });
  });

  it("records node.online and node.offline only when presence changes", async () => {
    const { name } = await createOrg("ev");
    const org = orgObject(name);
    await runInDurableObject(org, (_i, state) => {
      state.storage.sql.exec(
        "INSERT INTO nodes (id, public_key, state, state_changed_at, labels, enrolled_at, enrollment_token) VALUES ('p-1', 'k', 'active', 0, '{}', 0, 't')",
      );
    });
    await org.nodePresenceChanged("p-1", true, Date.now());
    await org.nodePresenceChanged("p-1", true, Date.now());
    await org.nodePresenceChanged("p-1", false, Date.now());
    await org.nodePresenceChanged("p-1", false, Date.now());
    await org.nodePresenceChanged("unknown", true, Date.now());
    const kept = await runInDurableObject(org, (_i, state) =>
      state.storage.sql.exec<{ type: string; data: string }>("SELECT type, data FROM events ORDER BY id").toArray(),
    );
    expect(kept).toEqual([
      { type: "node.online", data: JSON.stringify({ nodeId: "p-1" }) },
      { type: "node.offline", data: JSON.stringify({ nodeId: "p-1" }) },
    ]);
  });
});

describe("org events: deployments", () => {
  it("streams deploy.created, task.state changes, deploy.healthy and deploy.promoted for a first deployment", async () => {
    const { name, adminToken } = await createOrg("ev");
    const { socket } = await onlineAgent(adminToken, name, "d-1");
    const sub = await subscribe({ token: adminToken });
    await sub.ready();
    expect((await call("POST", "/api/v1/apps", { token: adminToken, body: { name: "web" } })).status).toBe(201);
    const bytes = new TextEncoder().encode(`code ${Math.random()}`);
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    await env.ARTIFACTS.put(`${name}/sha256/${digest}`, bytes);
    const deployed = await call<{ deployment: { id: string } }>("POST", "/api/v1/apps/web/deployments", {
      token: adminToken,
      body: { artifacts: [{ digest, size: bytes.byteLength, layer: "app" }], command: "node server.js" },
    });
    expect(deployed.status).toBe(201);
    const deploymentId = deployed.body.deployment.id;
    // The scheduler is not loaded in this layer: place the task the way it does.
    const [taskId] = await env.APP.get(env.APP.idFromName(`${name}/web`)).assignTasks(deploymentId, ["d-1"]);
    for (const state of ["starting", "healthy"]) {
      socket.send({ type: "task.status", v: 1, id: `s-${state}`, taskId, app: "web", deploymentId, state, hostPort: 41000, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() });
    }
    const events = await sub.waitFor((e) => e.some((x) => x.type === "deploy.promoted"), "deploy.promoted");
    const relevant = events.filter((e) => e.type !== "node.online");
    expect(types(relevant)).toEqual(["deploy.created", "task.state", "task.state", "deploy.healthy", "deploy.promoted"]);
    expect(relevant[0]?.data).toMatchObject({ app: "web", deploymentId });
    expect(relevant.slice(1, 3).map((e) => e.data)).toEqual([
      { app: "web", deploymentId, taskId, nodeId: "d-1", state: "starting", hostPort: 41000 },
      { app: "web", deploymentId, taskId, nodeId: "d-1", state: "healthy", hostPort: 41000 },
    ]);
  });
});

describe("org events: subscribing", () => {
  it("sends ready with the newest id, then only the kept events after since, then live ones", async () => {
    const { name, adminToken } = await createOrg("ev");
    await orgObject(name).recordEvents(sample(5));
    const sub = await subscribe({ token: adminToken, since: 3 });
    expect(await sub.ready()).toBe(5);
    expect((await sub.waitFor((e) => e.length === 2, "backlog")).map((e) => e.id)).toEqual([4, 5]);
    expect(sub.messages[0]?.type).toBe("ready");
    await orgObject(name).recordEvents(sample(1, 100));
    const all = await sub.waitFor((e) => e.length === 3, "live event");
    expect(all[2]).toMatchObject({ id: 6, data: { nodeId: "n-100" } });

    const none = await subscribe({ token: adminToken });
    expect(await none.ready()).toBe(6);
    const fromStart = await subscribe({ token: adminToken, since: 0 });
    expect((await fromStart.waitFor((e) => e.length === 6, "everything")).map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(none.events()).toEqual([]);
  });

  it("authenticates a browser by its first message and sends nothing before it", async () => {
    const { name } = await createOrg("ev");
    const other = await createOrg("other");
    const readToken = await createToken(other.adminToken, "viewer", "read");
    const res = await openEvents({ since: 0 });
    const sub = subscriberOf(res);
    await new Promise((r) => setTimeout(r, 100));
    expect(sub.messages).toEqual([]);
    await orgObject(name).recordEvents(sample(1));
    sub.ws.send(JSON.stringify({ type: "auth", token: readToken }));
    expect(await sub.ready()).toBe(0);
    // The token's own org, not the one that just had an event.
    await new Promise((r) => setTimeout(r, 50));
    expect(sub.events()).toEqual([]);
  });

  it("relays live events to a browser socket and closes it when the token is revoked", async () => {
    const { name, adminToken } = await createOrg("ev");
    const viewer = await createToken(adminToken, "viewer", "read");
    const sub = subscriberOf(await openEvents());
    sub.ws.send(JSON.stringify({ type: "auth", token: viewer }));
    await sub.ready();
    await orgObject(name).recordEvents(sample(2));
    expect((await sub.waitFor((e) => e.length === 2, "relayed")).map((e) => e.id)).toEqual([1, 2]);
    const tokens = await call<{ tokens: Array<{ id: string; name: string }> }>("GET", "/api/v1/tokens", { token: adminToken });
    const id = tokens.body.tokens.find((t) => t.name === "viewer")?.id as string;
    expect((await call("DELETE", `/api/v1/tokens/${id}`, { token: adminToken })).status).toBe(200);
    expect(await sub.closed).toEqual({ code: 4001, reason: "token revoked" });
  });

  it("closes 4001 with a reason for a bad token, a malformed token and a message that is not auth", async () => {
    const { name } = await createOrg("ev");
    const cases = [
      { message: { type: "auth", token: `zt_${name}_0123456789abcdef_${"0".repeat(64)}` }, reason: "invalid, expired or revoked API token" },
      { message: { type: "auth", token: "zt_nope" }, reason: "malformed API token" },
      { message: { type: "hello" }, reason: 'the first message must be {"type":"auth","token":"zt_..."}' },
    ];
    for (const { message, reason } of cases) {
      const sub = subscriberOf(await openEvents());
      sub.ws.send(JSON.stringify(message));
      expect(await sub.closed).toEqual({ code: 4001, reason });
      expect(sub.messages).toEqual([]);
    }
  });

  it("answers a bad bearer token with 401, a plain GET with 400, and a bad since with 400", async () => {
    const { adminToken } = await createOrg("ev");
    const bad = await openEvents({ token: "zt_x_0123456789abcdef_" + "0".repeat(64) });
    expect(bad.status).toBe(401);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    expect((await call("GET", "/api/v1/events", { token: adminToken })).status).toBe(400);
    const badSince = await exports.default.fetch(
      new Request("http://api.test/api/v1/events?since=-1", { headers: { upgrade: "websocket", authorization: `Bearer ${adminToken}` } }),
    );
    expect(badSince.status).toBe(400);
  });
});

describe("org events: retention", () => {
  it("keeps the newest 10,000 events; ids go on increasing after pruning", async () => {
    const { name, adminToken } = await createOrg("ev");
    const org = orgObject(name);
    for (let i = 0; i < 6; i++) await org.recordEvents(sample(2_000, i * 2_000));
    const bounds = await runInDurableObject(org, (_i, state) =>
      state.storage.sql.exec<{ lo: number; hi: number; n: number }>("SELECT MIN(id) AS lo, MAX(id) AS hi, COUNT(*) AS n FROM events").one(),
    );
    expect(bounds).toEqual({ lo: 2_001, hi: 12_000, n: 10_000 });
    const sub = await subscribe({ token: adminToken, since: 11_995 });
    expect(await sub.ready()).toBe(12_000);
    expect((await sub.waitFor((e) => e.length === 5, "tail")).map((e) => e.id)).toEqual([11_996, 11_997, 11_998, 11_999, 12_000]);
  });

  it("drops events older than 24 hours", async () => {
    const { name } = await createOrg("ev");
    const org = orgObject(name);
    await org.recordEvents(sample(3));
    await runInDurableObject(org, (_i, state) => {
      state.storage.sql.exec("UPDATE events SET recorded_at = ? WHERE id <= 2", Date.now() - 25 * 3600 * 1000);
    });
    await org.recordEvents(sample(1));
    const ids = await runInDurableObject(org, (_i, state) => state.storage.sql.exec<{ id: number }>("SELECT id FROM events ORDER BY id").toArray().map((r) => r.id));
    expect(ids).toEqual([3, 4]);
  });
});
