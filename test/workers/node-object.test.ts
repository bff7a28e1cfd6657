import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PING_FRAME } from "../../protocol/agent-wire.ts";
import { challenge, connect, onlineAgent, SAMPLE_FACTS } from "./agent-helpers.ts";
import { call, createOrg } from "./helpers.ts";
import { nodeStub } from "../../durable-objects/env.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface NodeList {
  nodes: { id: string; online: boolean; lastSeen: string | null }[];
}

describe("NodeObject connection", () => {
  it("replaces the old socket when the node connects again", async () => {
    const { name, adminToken } = await createOrg("replace");
    const { agent, socket: first } = await onlineAgent(adminToken, name, "r1");
    const second = await connect(name, agent);
    await second.next("welcome");
    expect(await first.closed).toMatchObject({ code: 4000 });
    const list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes[0]?.online).toBe(true);
    second.ws.close(1000);
  });

  it("closes the socket at once on revoke and refuses later connects", async () => {
    const { name, adminToken } = await createOrg("revoke");
    const { socket } = await onlineAgent(adminToken, name, "v1");
    const res = await call("POST", "/api/v1/nodes/v1/revoke", { token: adminToken, body: { reason: "stolen" } });
    expect(res.status).toBe(200);
    expect(await socket.closed).toMatchObject({ code: 4003 });
    const again = await challenge(name, "v1");
    expect(again.status).toBe(403);
    expect(again.body.error?.details?.state).toBe("revoked");
  });

  it("answers heartbeats and messages across hibernation", async () => {
    const { name, adminToken } = await createOrg("hib");
    const { socket } = await onlineAgent(adminToken, name, "h1");
    await evictDurableObject(nodeStub(env, name, "h1"));
    socket.send(PING_FRAME);
    expect(await socket.next("pong")).toEqual({ type: "pong" });
    socket.send({ type: "facts", v: 1, facts: { ...SAMPLE_FACTS, hostname: "after-hibernation" } });
    await expect
      .poll(async () => (await call<{ node: { hostname: string } }>("GET", "/api/v1/nodes/h1", { token: adminToken })).body.node.hostname)
      .toBe("after-hibernation");
    socket.ws.close(1000);
  });

  it("marks a silent node offline after three missed heartbeats (1 s each here)", async () => {
    const { name, adminToken } = await createOrg("silent");
    const { socket } = await onlineAgent(adminToken, name, "s1");
    const stub = nodeStub(env, name, "s1");
    // Within the window the alarm only reschedules.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    let list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes[0]?.online).toBe(true);
    await sleep(3300);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await socket.closed).toMatchObject({ code: 4001 });
    list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes[0]).toMatchObject({ online: false });
    expect(list.body.nodes[0]?.lastSeen).not.toBeNull();
  });

  it("keeps a node that pings online past the window", async () => {
    const { name, adminToken } = await createOrg("pinger");
    const { socket } = await onlineAgent(adminToken, name, "p1");
    for (let i = 0; i < 7; i++) {
      socket.send(PING_FRAME);
      await sleep(500);
    }
    await runDurableObjectAlarm(nodeStub(env, name, "p1"));
    const list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes[0]?.online).toBe(true);
    socket.ws.close(1000);
  });

  it("marks the node offline when the agent disconnects", async () => {
    const { name, adminToken } = await createOrg("bye");
    const { socket } = await onlineAgent(adminToken, name, "b1");
    socket.ws.close(1000, "shutting down");
    await expect
      .poll(async () => (await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken })).body.nodes[0]?.online)
      .toBe(false);
  });
});

describe("NodeObject inbound validation", () => {
  it("answers bad frames with typed errors and changes nothing", async () => {
    const { name, adminToken } = await createOrg("badframes");
    const { socket } = await onlineAgent(adminToken, name, "f1");
    const cases: Array<[unknown, string]> = [
      ["{not json", "invalid_json"],
      [{ type: "launch.missiles", v: 1 }, "unknown_type"],
      [{ type: "facts", v: 1, facts: { ...SAMPLE_FACTS, cpuCount: "many" } }, "invalid_message"],
      [{ type: "facts", v: 1, facts: SAMPLE_FACTS, extra: true }, "invalid_message"],
      [{ type: "facts", v: 2, facts: SAMPLE_FACTS }, "invalid_message"],
      [{ type: "facts", v: 1, nodeId: "someone-else", facts: { ...SAMPLE_FACTS, hostname: "spoofed" } }, "identity_mismatch"],
    ];
    for (const [frame, code] of cases) {
      const from = socket.messages.length;
      socket.send(frame);
      expect(await socket.next("error", from), JSON.stringify(frame)).toMatchObject({ code });
    }
    const from = socket.messages.length;
    socket.ws.send(new Uint8Array([1, 2, 3]));
    expect(await socket.next("error", from)).toMatchObject({ code: "invalid_message" });
    const node = await call<{ node: { hostname: string } }>("GET", "/api/v1/nodes/f1", { token: adminToken });
    expect(node.body.node.hostname).toBe("web-1");
    // Still connected and working after all that.
    socket.send(PING_FRAME);
    await socket.next("pong");
    socket.ws.close(1000);
  });

  it("closes with 1009 on a frame over 1 MiB", async () => {
    const { name, adminToken } = await createOrg("bigframe");
    const { socket } = await onlineAgent(adminToken, name, "g1");
    socket.send({ type: "facts", v: 1, facts: { ...SAMPLE_FACTS, cpuModel: "x".repeat(1024 * 1024) } });
    expect((await socket.closed).code).toBe(1009);
  });
});

describe("settings and the outbox", () => {
  it("merges node > label > org and reports where each value came from", async () => {
    const { name, adminToken } = await createOrg("merge");
    const { socket } = await onlineAgent(adminToken, name, "m1");
    await call("PATCH", "/api/v1/nodes/m1/labels", { token: adminToken, body: { labels: { env: "prod" } } });
    const put = (scope: unknown, key: string, value: unknown) =>
      call("PUT", "/api/v1/settings", { token: adminToken, body: { scope, key, value } });
    await put({ kind: "org" }, "log_level", "info");
    await put({ kind: "org" }, "region", "eu");
    await put({ kind: "label", key: "env", value: "prod" }, "log_level", "warn");
    await put({ kind: "node", nodeId: "m1" }, "region", "us");
    const merged = await call<{ settings: Record<string, unknown>; sources: Record<string, string> }>(
      "GET",
      "/api/v1/nodes/m1/settings",
      { token: adminToken },
    );
    expect(merged.body.settings).toEqual({ log_level: "warn", region: "us" });
    expect(merged.body.sources).toEqual({ log_level: "label:env=prod", region: "node:m1" });
    await expect
      .poll(() => {
        const updates = socket.messages.filter((m) => m.type === "action");
        return (updates.at(-1)?.action as { settings?: unknown } | undefined)?.settings;
      })
      .toEqual({ log_level: "warn", region: "us" });
    socket.ws.close(1000);
  });

  it("stores actions for an offline node and resends them until acked", async () => {
    const { name, adminToken } = await createOrg("outbox");
    const { agent, socket } = await onlineAgent(adminToken, name, "o1");
    socket.ws.close(1000);
    await socket.closed;
    const res = await call("PUT", "/api/v1/settings", { token: adminToken, body: { scope: { kind: "org" }, key: "k", value: 1 } });
    expect(res.status).toBe(200);

    const second = await connect(name, agent);
    const action = await second.next("action");
    expect(second.messages[0]?.type).toBe("welcome");
    expect(action).toMatchObject({ action: { kind: "settings.update", settings: { k: 1 } } });
    second.ws.close(1000);
    await second.closed;

    // Not acked: it comes again; acked: it does not.
    const third = await connect(name, agent);
    const again = await third.next("action");
    expect(again.id).toBe(action.id);
    third.send({ type: "ack", v: 1, ids: [action.id] });
    await sleep(100);
    third.ws.close(1000);
    await third.closed;
    const fourth = await connect(name, agent);
    await fourth.next("welcome");
    await sleep(200);
    expect(fourth.messages.filter((m) => m.type === "action")).toEqual([]);
    fourth.ws.close(1000);
  });
});

describe("NodeObject after a runtime restart", () => {
  it("marks a node offline when its socket vanished without a close event", async () => {
    const { name, adminToken } = await createOrg("vanish");
    await onlineAgent(adminToken, name, "x1");
    const stub = nodeStub(env, name, "x1");
    // Evicting with closed sockets and no handler call is what a process restart looks like to the object.
    await evictDurableObject(stub, { webSockets: "close" });
    await runDurableObjectAlarm(stub);
    const list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes[0]?.online).toBe(false);
  });
});
