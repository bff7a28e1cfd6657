import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentConnection, type AgentConnectionOptions, type ConnectionEvents } from "../../agent/src/connection.ts";
import { collectFacts } from "../../agent/src/facts.ts";
import { ed25519Signer, generateNodeKey, type NodeKey } from "../../agent/src/keys.ts";
import { Logger } from "../../agent/src/log.ts";
import { type AgentState, openAgentState } from "../../agent/src/state/agent-state.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import { DedupLedger } from "../../agent/src/state/ledger.ts";
import { FactsMessage, PING_FRAME } from "../../protocol/agent-wire.ts";
import type { EnrollmentState, Facts } from "../../protocol/nodes.ts";
import { type AgentSession, FakeControlPlane, until, useFakeControlPlane } from "./helpers/agent-control-plane.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** The connection logic in-process, against a fake control plane that verifies every signature. */

const tempDir = useTempDirs();
const { plane, cleanups } = useFakeControlPlane();

interface Harness {
  connection: AgentConnection;
  state: AgentState;
  dir: string;
  key: NodeKey;
  logs: Record<string, unknown>[];
  events: { [K in keyof ConnectionEvents]?: ConnectionEvents[K][0][] };
  ended: Promise<Awaited<ReturnType<AgentConnection["run"]>>>;
}

function startAgent(options: { state?: EnrollmentState; on?: FakeControlPlane; connection?: Partial<AgentConnectionOptions> } = {}): Harness {
  const target = options.on ?? plane;
  const key = generateNodeKey();
  target.register("web-1", key.publicKey, options.state ?? "active");
  const dir = join(tempDir(), "agent");
  ensurePrivateDir(dir);
  const state = openAgentState(dataDirPaths(dir));
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger({ sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>), fields: { nodeId: "web-1" } });
  const connection = new AgentConnection({
    identity: { url: target.url, org: target.org, nodeId: "web-1" },
    signer: ed25519Signer(key.privateKey),
    settings: state.settings,
    outbox: state.outbox,
    appliedActions: state.appliedActions,
    facts: () => collectFacts({ rack: "r1" }),
    logger,
    backoff: { baseMs: 5, capMs: 20 },
    ...options.connection,
  });
  const events: Harness["events"] = {};
  for (const name of ["welcome", "action", "acked", "retry", "disconnected", "pending", "facts-sent"] as const) {
    connection.on(name, (payload?: unknown) => {
      ((events[name] ??= []) as unknown[]).push(payload);
    });
  }
  const ended = connection.run();
  cleanups.push(async () => {
    await connection.stop();
    state.close();
  });
  return { connection, state, dir, key, logs, events, ended };
}

const welcomes = (h: Harness, n = 1) => until(() => (h.events.welcome?.length ?? 0) >= n, `${n} welcome(s)`);
const acksFor = (session: AgentSession, id: string) => plane.ackCount(session, id);

describe("AgentConnection", () => {
  it("connects with a signature over a fresh nonce, gets a welcome and sends valid facts", async () => {
    const h = startAgent();
    await welcomes(h);
    const session = plane.session();
    expect(plane.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /api/v1/agent/challenge"]);
    expect(plane.requests[0]?.body).toEqual({ v: 1, org: "acme", nodeId: "web-1" });
    expect(plane.acceptedNonces).toEqual([plane.issuedNonces[0]]);
    expect(h.connection.connected).toBe(true);

    const facts = await until(() => plane.messages(session, "facts")[0], "facts");
    const parsed = FactsMessage.parse(facts);
    // Identity comes from the socket; the agent never names a node in its payload.
    expect("nodeId" in parsed).toBe(false);
    expect(parsed.facts.custom).toEqual({ rack: "r1" });

    const connected = h.logs.find((line) => line.msg === "connected");
    expect(connected).toMatchObject({ level: "info", component: "agent", nodeId: "web-1", heartbeatSeconds: 30 });
    expect(Number.isNaN(Date.parse(String(connected?.ts)))).toBe(false);
  });

  it("writes a settings.update to the snapshot before acking it, and acks a repeat without re-applying it", async () => {
    const h = startAgent();
    await welcomes(h);
    const session = plane.session();
    const settingsFile = join(h.dir, "settings.json");

    plane.sendAction(session, "a1", { kind: "settings.update", version: "v1", settings: { "log.level": "debug" } });
    await until(() => acksFor(session, "a1") === 1, "ack of a1");
    // Read the moment the ack is seen: the snapshot was already on disk.
    const first = JSON.parse(readFileSync(settingsFile, "utf8")) as { version: string; settings: unknown; receivedAt: string };
    expect(first).toMatchObject({ version: "v1", settings: { "log.level": "debug" } });
    expect(plane.messages(session, "ack")[0]).toEqual({ type: "ack", v: 1, ids: ["a1"] });
    expect(h.state.settings.currentSettings()?.version).toBe("v1");

    // The same id again (a resend), even with other content: acked, not applied.
    plane.sendAction(session, "a1", { kind: "settings.update", version: "v2", settings: { "log.level": "trace" } });
    await until(() => acksFor(session, "a1") === 2, "second ack of a1");
    expect(JSON.parse(readFileSync(settingsFile, "utf8"))).toEqual(first);
    expect(h.events.action?.map((a) => `${a.id}:${a.outcome}`)).toEqual(["a1:applied", "a1:duplicate"]);

    // The applied ids survive a restart.
    const reopened = DedupLedger.open(join(h.dir, "actions.jsonl"));
    expect(reopened.seen("a1", 0)).toBe(true);
    reopened.close();
  });

  it("does not ack an action whose handler failed, so the server's resend after a reconnect applies it", async () => {
    let calls = 0;
    const h = startAgent({ connection: { stableMs: 0 } });
    h.connection.handle("settings.update", (action) => {
      calls++;
      if (calls === 1) throw new Error("disk full");
      h.state.settings.apply(action);
    });
    await welcomes(h);
    const action = { kind: "settings.update", version: "v9", settings: { k: 1 } };
    plane.sendAction(plane.session(), "s1", action);
    await until(() => h.events.action?.length === 1, "the failed action");
    expect(h.events.action?.[0]).toEqual({ id: "s1", kind: "settings.update", outcome: "failed" });
    expect(plane.messages(plane.session(), "ack")).toEqual([]);
    expect(h.logs.find((line) => line.msg === "action failed")).toMatchObject({ level: "error", id: "s1", error: "disk full" });

    plane.session().socket.close(1001, "going away");
    await welcomes(h, 2);
    plane.sendAction(plane.session(), "s1", action);
    await until(() => acksFor(plane.session(), "s1") === 1, "the ack after the resend");
    expect(h.state.settings.currentSettings()?.version).toBe("v9");
    expect(calls).toBe(2);
  });

  it("acks unknown and malformed actions so they do not loop, without applying them", async () => {
    const h = startAgent();
    await welcomes(h);
    const session = plane.session();
    plane.sendAction(session, "x1", { kind: "job.teleport", to: "mars" });
    plane.sendAction(session, "x2", { kind: "settings.update", settings: {} });
    await until(() => acksFor(session, "x1") === 1 && acksFor(session, "x2") === 1, "acks of x1 and x2");
    expect(h.events.action?.map((a) => `${a.id}:${a.kind}:${a.outcome}`)).toEqual(["x1:job.teleport:unknown", "x2:settings.update:invalid"]);
    expect(h.state.settings.currentSettings()).toBeNull();
    expect(h.logs.find((line) => line.msg === "ignored an action of a kind this agent does not know")).toMatchObject({ level: "warn", kind: "job.teleport" });

    // A message type from a newer server is ignored, not fatal.
    session.socket.send(JSON.stringify({ type: "hologram", v: 1 }));
    session.socket.send("not json");
    plane.sendAction(session, "x3", { kind: "settings.update", version: "v3", settings: {} });
    await until(() => acksFor(session, "x3") === 1, "ack of x3");
    expect(h.connection.connected).toBe(true);
  });

  it("sends the exact ping frame every heartbeatSeconds", async () => {
    const beating = await FakeControlPlane.start({ heartbeatSeconds: 1 });
    cleanups.push(() => beating.close());
    const h = startAgent({ on: beating });
    await welcomes(h);
    const started = Date.now();
    const session = beating.session();
    await until(() => session.received.some((m) => JSON.stringify(m) === PING_FRAME), "a ping", 3_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(session.received).toContainEqual(JSON.parse(PING_FRAME));
    // Pongs count as life: the connection stays up.
    expect(h.connection.connected).toBe(true);
  });

  it("drops a socket that goes silent and reconnects", async () => {
    plane.silent = true;
    const h = startAgent({ connection: { heartbeatMs: 40 } });
    await welcomes(h, 2);
    expect(h.events.retry?.[0]?.reason).toMatch(/nothing received for 120ms/);
    expect(plane.session(0).received.filter((m) => JSON.stringify(m) === PING_FRAME).length).toBeGreaterThanOrEqual(2);
  });

  it("reconnects after the server closes the socket, with a fresh nonce each time, and flushes its outbox in order", async () => {
    plane.autoAck = false;
    const h = startAgent({ connection: { stableMs: 0 } });
    await welcomes(h);
    const first = plane.session();
    // Sent now but never acked: it must be sent again after the reconnect.
    h.connection.enqueue({ id: "r1", type: "return", jid: "j1" });
    await until(() => first.received.some((m) => (m as { id?: string }).id === "r1"), "r1 on the first socket");

    // Produced while offline: queued durably, sent after the next welcome.
    h.connection.once("disconnected", () => h.connection.enqueue({ id: "r2", type: "return", jid: "j2" }));
    plane.challengeReplies.push({ status: 503, body: { error: { code: "unavailable", message: "try later" } } });
    plane.autoAck = true;
    first.socket.close(4000, "replaced");
    await welcomes(h, 2);

    const second = plane.session();
    await until(() => h.state.outbox.size === 0, "the outbox to drain");
    const flushed = second.received.filter((m) => typeof (m as { id?: unknown }).id === "string").map((m) => (m as { id: string }).id);
    expect(flushed).toEqual(["r1", "r2"]);
    expect(readdirSync(join(h.dir, "outbox"))).toEqual([]);
    expect(h.events.acked?.flat()).toEqual(["r1", "r2"]);

    // Three challenges (one refused), two connects, each on a nonce of its own.
    expect(plane.requests.filter((r) => r.path === "/api/v1/agent/challenge")).toHaveLength(3);
    expect(plane.acceptedNonces).toEqual(plane.issuedNonces);
    expect(new Set(plane.sessions.map((s) => s.nonce)).size).toBe(2);
    // The first connection was "stable" (stableMs 0), so backoff restarted from attempt 0, then counted the 503.
    expect(h.events.retry?.map((r) => [r.attempt, r.reason.includes("replaced") || r.reason.includes("try later")])).toEqual([
      [0, true],
      [1, true],
    ]);
    expect(h.events.retry?.every((r) => r.delayMs >= 0 && r.delayMs <= 20)).toBe(true);
  });

  it("keeps retrying while enrollment is pending and connects once approved", async () => {
    const h = startAgent({ state: "pending" });
    await until(() => (h.events.pending?.length ?? 0) >= 2, "two pending answers");
    expect(h.connection.connected).toBe(false);
    const node = plane.nodes.get("web-1");
    if (node) node.state = "approved";
    await welcomes(h);
    expect(h.logs.find((line) => line.msg === "waiting to retry")).toMatchObject({ level: "info", reason: "enrollment pending approval" });
    expect(h.logs.some((line) => line.level === "warn" || line.level === "error")).toBe(false);
  });

  it("gives up for good on a 403 revoked from the challenge", async () => {
    plane.challengeReplies.push({
      status: 403,
      body: { error: { code: "forbidden", message: "node is revoked", details: { state: "revoked" } } },
    });
    const h = startAgent();
    const end = await h.ended;
    expect(end).toEqual({ reason: "revoked", message: "the control plane revoked this node: node is revoked" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(plane.requests).toHaveLength(1);
    expect(h.events.retry).toBeUndefined();
  });

  it("gives up for good when the server closes with 4003, and on a rejected node", async () => {
    const h = startAgent();
    await welcomes(h);
    plane.session().socket.close(4003, "revoked by admin");
    expect(await h.ended).toEqual({ reason: "revoked", message: "the control plane revoked this node: revoked by admin" });

    const other = await FakeControlPlane.start();
    cleanups.push(() => other.close());
    const rejected = startAgent({ on: other, state: "rejected" });
    expect(await rejected.ended).toMatchObject({ reason: "rejected" });
  });

  it("is refused by a server that verifies the signature when it signs with the wrong key", async () => {
    const h = startAgent({ connection: { signer: ed25519Signer(generateNodeKey().privateKey) } });
    await until(() => (h.events.retry?.length ?? 0) >= 2, "two retries");
    expect(plane.refusedConnects.slice(0, 2)).toEqual(["bad signature", "bad signature"]);
    expect(h.events.retry?.[0]?.reason).toMatch(/connect failed: bad signature \(unauthorized, HTTP 401\)/);
    expect(plane.sessions).toHaveLength(0);
  });

  it("re-collects facts on a timer and sends them only when they changed", async () => {
    // Fixed host facts: only the custom fact changes (live disk numbers would make this racy).
    const host = collectFacts();
    let rack = "r1";
    const h = startAgent({ connection: { factsIntervalMs: 20, facts: () => ({ ...host, custom: { rack } }) } });
    await welcomes(h);
    const session = plane.session();
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(plane.messages(session, "facts")).toHaveLength(1);
    rack = "r2";
    await until(() => plane.messages(session, "facts").length === 2, "changed facts");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = plane.messages(session, "facts").map((m) => (m.facts as Facts).custom.rack);
    expect(sent).toEqual(["r1", "r2"]);
  });

  it("closes with 1000 on stop and ends the run", async () => {
    const h = startAgent();
    await welcomes(h);
    await h.connection.stop();
    expect(await h.ended).toEqual({ reason: "stopped" });
    expect(await plane.session().closed).toEqual({ code: 1000, reason: "agent stopping" });
    expect(h.connection.state).toBe("stopped");
  });
});
