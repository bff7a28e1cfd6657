import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type AgentSocket, connect, enroll, enrollmentToken, makeAgent, onlineAgent } from "./agent-helpers.ts";
import type { NodeObject } from "../../durable-objects/NodeObject.ts";
import { call, createOrg } from "./helpers.ts";
import { nodeStub, orgStub } from "../../durable-objects/env.ts";

interface Created {
  jid: string;
  targets: string[];
  status: string;
}
interface JobBody {
  job: {
    status: string;
    counts: { targets: number; returned: number; succeeded: number; failed: number; unreachable: number };
    targets: { nodeId: string; state: string; resent: boolean; return: { success: boolean; synthetic: boolean; result: unknown } | null }[];
  };
}

const jobObject = (org: string, jid: string) => env.JOB.get(env.JOB.idFromName(`${org}/${jid}`));

async function storedDispatches(org: string, nodeId: string) {
  return runInDurableObject(nodeStub(env, org, nodeId), (_i, state) => state.storage.sql.exec("SELECT id FROM outbox WHERE kind = 'job.dispatch'").toArray().map((r) => r.id));
}

async function submit(token: string, body: Record<string, unknown>) {
  return call<Created & { error?: { code: string; message: string } }>("POST", "/api/v1/jobs", { token, body });
}

async function getJob(token: string, jid: string) {
  return (await call<JobBody>("GET", `/api/v1/jobs/${jid}`, { token })).body.job;
}

/** What a real agent does with a dispatch: ack it, then send a return through its outbox id. */
async function acceptAndReturn(socket: AgentSocket, jid: string, ret: { success: boolean; result: unknown }, returnId = `r-${Math.random()}`) {
  const dispatch = await waitForAction(socket, "job.dispatch", jid);
  socket.send({ type: "ack", v: 1, ids: [dispatch.id] });
  const from = socket.messages.length;
  socket.send({
    type: "return", v: 1, id: returnId, jid, epoch: 1,
    return: { success: ret.success, retcode: ret.success ? 0 : 1, result: ret.result, error: ret.success ? null : "boom", durationMs: 2, startedAt: null },
  });
  return { dispatch, serverAck: await socket.next("ack", from) };
}

async function waitForAction(socket: AgentSocket, kind: string, jid: string, from = 0): Promise<{ id: string; action: Record<string, unknown> }> {
  for (let i = 0; i < 200; i++) {
    const found = socket.messages.slice(from).find((m) => m.type === "action" && (m.action as { kind: string; jid?: string }).kind === kind && (m.action as { jid?: string }).jid === jid);
    if (found) return found as { id: string; action: Record<string, unknown> };
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no ${kind} for ${jid}: ${JSON.stringify(socket.messages)}`);
}

/** An org with one online agent and a job sent to it, its dispatch received: where most timing tests start. */
async function dispatchedToOne(orgName: string, nodeId: string, job: { function: string; args?: Record<string, unknown> } = { function: "test.ping" }) {
  const { name, adminToken } = await createOrg(orgName);
  const a = await onlineAgent(adminToken, name, nodeId);
  const created = await submit(adminToken, { targets: [nodeId], ...job });
  const dispatch = await waitForAction(a.socket, "job.dispatch", created.body.jid);
  return { name, adminToken, a, created, dispatch };
}

/** Moves the job's clock back instead of sleeping through 5 s grace periods. */
async function age(org: string, jid: string, ms: number) {
  await runInDurableObject(jobObject(org, jid), (_i, state) => {
    state.storage.sql.exec("UPDATE job SET created_at = created_at - ?", ms);
  });
  return runDurableObjectAlarm(jobObject(org, jid));
}

describe("jobs: dispatch and returns", () => {
  it("completes when every target returns success, and the index follows", async () => {
    const { name, adminToken } = await createOrg("jobs-ok");
    const a = await onlineAgent(adminToken, name, "j-1");
    const b = await onlineAgent(adminToken, name, "j-2");
    const created = await submit(adminToken, { target: "j-*", function: "test.ping" });
    expect(created.status).toBe(202);
    expect(created.body.targets).toEqual(["j-1", "j-2"]);
    expect(created.body.jid).toMatch(/^\d{23}$/);
    const active = await call<{ jobs: { jid: string }[] }>("GET", "/api/v1/jobs/active", { token: adminToken });
    expect(active.body.jobs.map((j) => j.jid)).toEqual([created.body.jid]);

    const { serverAck } = await acceptAndReturn(a.socket, created.body.jid, { success: true, result: true }, "ret-a");
    expect(serverAck).toMatchObject({ type: "ack", ids: ["ret-a"] });
    await acceptAndReturn(b.socket, created.body.jid, { success: true, result: true });
    const job = await getJob(adminToken, created.body.jid);
    expect(job.status).toBe("complete");
    expect(job.counts).toEqual({ targets: 2, returned: 2, succeeded: 2, failed: 0, unreachable: 0 });
    expect(job.targets.map((t) => t.state)).toEqual(["returned", "returned"]);
    const list = await call<{ jobs: { jid: string; status: string }[] }>("GET", "/api/v1/jobs", { token: adminToken });
    expect(list.body.jobs[0]).toMatchObject({ jid: created.body.jid, status: "complete" });
    expect((await call<{ jobs: unknown[] }>("GET", "/api/v1/jobs/active", { token: adminToken })).body.jobs).toEqual([]);
  });

  it("fails when any target fails; first real return wins; duplicates are acked but ignored", async () => {
    const { name, adminToken } = await createOrg("jobs-fail");
    const a = await onlineAgent(adminToken, name, "f-1");
    const created = await submit(adminToken, { targets: ["f-1"], function: "cmd.run", args: { cmd: "false" } });
    await acceptAndReturn(a.socket, created.body.jid, { success: false, result: { retcode: 1 } }, "first");
    const from = a.socket.messages.length;
    a.socket.send({ type: "return", v: 1, id: "second", jid: created.body.jid, epoch: 1, return: { success: true, retcode: 0, result: "late", error: null, durationMs: 1, startedAt: null } });
    expect(await a.socket.next("ack", from)).toMatchObject({ ids: ["second"] });
    const job = await getJob(adminToken, created.body.jid);
    expect(job.status).toBe("failed");
    expect(job.targets[0]?.return).toMatchObject({ success: false, result: { retcode: 1 } });
  });

  it("takes a dispatch's ack riding on its return: the target is acked and the node holds the action no longer", async () => {
    const { name, adminToken, a, created, dispatch } = await dispatchedToOne("jobs-ride", "r-1");
    const from = a.socket.messages.length;
    a.socket.send({
      type: "return", v: 1, id: "ret-ride", jid: created.body.jid, epoch: 1, acks: [dispatch.id],
      return: { success: true, retcode: 0, result: true, error: null, durationMs: 1, startedAt: null },
    });
    expect(await a.socket.next("ack", from)).toMatchObject({ ids: ["ret-ride"] });
    const job = await getJob(adminToken, created.body.jid);
    expect(job.status).toBe("complete");
    expect(await storedDispatches(name, "r-1")).toEqual([]);
    expect(await nodeStub(env, name, "r-1").isAcked(dispatch.id)).toBe(true);
  });

  it("takes a return's node from the socket: foreign returns are dropped", async () => {
    const { name, adminToken } = await createOrg("jobs-ident");
    const a = await onlineAgent(adminToken, name, "i-1");
    const outsider = await onlineAgent(adminToken, name, "i-2");
    const created = await submit(adminToken, { targets: ["i-1"], function: "test.ping" });
    const base = { type: "return", v: 1, jid: created.body.jid, epoch: 1, return: { success: true, retcode: 0, result: "spoof", error: null, durationMs: 1, startedAt: null } };
    let from = outsider.socket.messages.length;
    outsider.socket.send({ ...base, id: "o1" });
    expect(await outsider.socket.next("ack", from)).toMatchObject({ ids: ["o1"] });
    from = outsider.socket.messages.length;
    outsider.socket.send({ ...base, id: "o2", nodeId: "i-1" });
    expect(await outsider.socket.next("error", from)).toMatchObject({ code: "identity_mismatch" });
    const job = await getJob(adminToken, created.body.jid);
    expect(job.status).toBe("running");
    expect(job.targets[0]?.return).toBeNull();
    a.socket.ws.close(1000);
  });
});

describe("jobs: returns arriving together", () => {
  it("gives each concurrent return its own outcome, finishes once, and loses none", async () => {
    const { name, adminToken } = await createOrg("jobs-batch");
    const agents = await Promise.all(["b-1", "b-2", "b-3"].map((id) => onlineAgent(adminToken, name, id)));
    const created = await submit(adminToken, { target: "b-*", function: "test.ping" });
    const job = jobObject(name, created.body.jid);
    const ret = (result: string) => ({ success: true, retcode: 0, result, error: null, durationMs: 1, startedAt: null });
    const outcomes = await Promise.all([
      job.recordReturn("b-1", ret("first")),
      job.recordReturn("b-1", ret("second")),
      job.recordReturn("b-2", ret("b2")),
      job.recordReturn("stranger", ret("x")),
      job.recordReturn("b-3", ret("b3")),
    ]);
    expect(outcomes).toEqual(["stored", "duplicate", "stored", "not_a_target", "stored"]);
    const stored = await getJob(adminToken, created.body.jid);
    expect(stored.status).toBe("complete");
    expect(stored.targets.map((t) => t.return?.result)).toEqual(["first", "b2", "b3"]);
    const finished = await runInDurableObject(job, (_i, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM events WHERE type = 'job.finished'").one().n);
    expect(finished).toBe(1);
    for (const a of agents) a.socket.ws.close(1000);
  });
});

describe("jobs: a dispatch to a connected agent waits for its ack in memory", () => {
  it("writes nothing to the node's outbox, yet counts as pending until acked", async () => {
    const { name, adminToken } = await createOrg("jobs-mem");
    const a = await onlineAgent(adminToken, name, "m-1");
    // The settings sent at connect are still unacked by this bare test agent.
    const pendingBefore = (await nodeStub(env, name, "m-1").detail()).pendingActions;
    const created = await submit(adminToken, { targets: ["m-1"], function: "test.sleep", args: { seconds: 30 } });
    const dispatch = await waitForAction(a.socket, "job.dispatch", created.body.jid);
    expect(await storedDispatches(name, "m-1")).toEqual([]);
    expect((await nodeStub(env, name, "m-1").detail()).pendingActions).toBe(pendingBefore + 1);
    expect(await nodeStub(env, name, "m-1").isAcked(dispatch.id)).toBe(false);
    a.socket.send({ type: "ack", v: 1, ids: [dispatch.id] });
    await expect.poll(() => nodeStub(env, name, "m-1").isAcked(dispatch.id)).toBe(true);
    expect((await nodeStub(env, name, "m-1").detail()).pendingActions).toBe(pendingBefore);
    a.socket.ws.close(1000);
  });

  it("stores a dispatch still unacked when the socket closes, and sends it with the same id on the next connect", async () => {
    const { name, adminToken, a, created, dispatch: first } = await dispatchedToOne("jobs-park", "p-1");
    a.socket.ws.close(1000);
    await expect.poll(() => storedDispatches(name, "p-1")).toEqual([first.id]);
    const again = await connect(name, a.agent);
    const { dispatch } = await acceptAndReturn(again, created.body.jid, { success: true, result: true });
    expect(dispatch.id).toBe(first.id);
    expect((await getJob(adminToken, created.body.jid)).status).toBe("complete");
    expect(await storedDispatches(name, "p-1")).toEqual([]);
    again.ws.close(1000);
  });

  it("keeps a dispatch on the new socket in memory when the socket a reconnect replaced reports its close", async () => {
    const { name, adminToken } = await createOrg("jobs-replaced");
    const a = await onlineAgent(adminToken, name, "n-1");
    const b = await connect(name, a.agent);
    await b.next("welcome");
    const created = await submit(adminToken, { targets: ["n-1"], function: "test.sleep", args: { seconds: 30 } });
    const dispatch = await waitForAction(b, "job.dispatch", created.body.jid);
    // The close event of a socket that is not the open one, whenever the runtime delivers it.
    await runInDurableObject(nodeStub(env, name, "n-1"), async (instance: NodeObject) => {
      const stale = new WebSocketPair()[1];
      await instance.webSocketClose(stale, 1000);
    });
    expect(await storedDispatches(name, "n-1")).toEqual([]);
    expect(await nodeStub(env, name, "n-1").isAcked(dispatch.id)).toBe(false);
    expect((await call<{ node: { online: boolean } }>("GET", "/api/v1/nodes/n-1", { token: adminToken })).body.node.online).toBe(true);
    b.ws.close(1000);
    await expect.poll(() => storedDispatches(name, "n-1")).toEqual([dispatch.id]);
  });

  it("gets a dispatch its node object forgot (evicted before the ack) back from the job's re-send, stored this time", async () => {
    const { name, adminToken, a, created, dispatch: first } = await dispatchedToOne("jobs-forgot", "g-1");
    // The socket hibernates; the instance and what it held in memory are gone.
    await evictDurableObject(nodeStub(env, name, "g-1"));
    const from = a.socket.messages.length;
    await age(name, created.body.jid, 5_500);
    const resent = await waitForAction(a.socket, "job.dispatch", created.body.jid, from);
    expect(resent).toMatchObject({ id: first.id, action: first.action });
    expect(await storedDispatches(name, "g-1")).toEqual([first.id]);
    a.socket.send({
      type: "return", v: 1, id: "ret-g", jid: created.body.jid, epoch: 1, acks: [first.id],
      return: { success: true, retcode: 0, result: true, error: null, durationMs: 1, startedAt: null },
    });
    await expect.poll(async () => (await getJob(adminToken, created.body.jid)).status).toBe("complete");
    expect(await storedDispatches(name, "g-1")).toEqual([]);
    a.socket.ws.close(1000);
  });
});

describe("jobs: timing rules", () => {
  it("learns acks from the node objects when asked", async () => {
    const { name, adminToken, a, created, dispatch } = await dispatchedToOne("jobs-ack", "k-1", { function: "test.sleep", args: { seconds: 30 } });
    expect((await getJob(adminToken, created.body.jid)).targets[0]?.state).toBe("dispatched");
    a.socket.send({ type: "ack", v: 1, ids: [dispatch.id] });
    await expect.poll(async () => (await getJob(adminToken, created.body.jid)).targets[0]?.state).toBe("acked");
    // An acked target is not silent: no re-send at 5 s.
    const from = a.socket.messages.length;
    await age(name, created.body.jid, 5_500);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.socket.messages.slice(from).filter((m) => m.type === "action")).toEqual([]);
    expect((await getJob(adminToken, created.body.jid)).targets[0]?.resent).toBe(false);
  });

  it("re-sends once to a silent target after 5 s", async () => {
    const { name, adminToken, a, created, dispatch: first } = await dispatchedToOne("jobs-resend", "s-1");
    const from = a.socket.messages.length;
    expect(await age(name, created.body.jid, 5_500)).toBe(true);
    const again = await waitForAction(a.socket, "job.dispatch", created.body.jid, from);
    expect(again.id).toBe(first.id);
    expect((await getJob(adminToken, created.body.jid)).targets[0]?.resent).toBe(true);
  });

  it("gives offline targets a synthetic unreachable return; a later real one replaces it", async () => {
    const { name, adminToken } = await createOrg("jobs-unreach");
    const online = await onlineAgent(adminToken, name, "u-1");
    const sleeper = await makeAgent("u-2");
    await enroll(sleeper, await enrollmentToken(adminToken, { autoApprove: true }));
    const created = await submit(adminToken, { target: "u-*", function: "test.ping" });
    expect(created.body.targets).toEqual(["u-1", "u-2"]);
    await acceptAndReturn(online.socket, created.body.jid, { success: true, result: true });
    await age(name, created.body.jid, 10_500);
    let job = await getJob(adminToken, created.body.jid);
    expect(job.status).toBe("failed");
    expect(job.counts.unreachable).toBe(1);
    expect(job.targets[1]?.return).toMatchObject({ synthetic: true, success: false });

    // The node comes online: its outbox delivers the dispatch, and the real return replaces the synthetic one.
    const late = await connect(name, sleeper);
    await acceptAndReturn(late, created.body.jid, { success: true, result: true });
    job = await getJob(adminToken, created.body.jid);
    expect(job.targets[1]?.return).toMatchObject({ synthetic: false, success: true });
    expect(job.status).toBe("failed");
    late.ws.close(1000);
  });

  it("ends as partial at the deadline with some returns, timeout with none, and tells agents to stop", async () => {
    const { name, adminToken } = await createOrg("jobs-deadline");
    const a = await onlineAgent(adminToken, name, "d-1");
    const b = await onlineAgent(adminToken, name, "d-2");
    const partial = await submit(adminToken, { target: "d-*", function: "test.sleep", args: { seconds: 60 }, timeout: 30 });
    await acceptAndReturn(a.socket, partial.body.jid, { success: true, result: true });
    const bFrom = b.socket.messages.length;
    await age(name, partial.body.jid, 31_000);
    expect((await getJob(adminToken, partial.body.jid)).status).toBe("partial");
    await waitForAction(b.socket, "job.cancel", partial.body.jid, bFrom);

    const none = await submit(adminToken, { target: "d-*", function: "test.sleep", timeout: 30 });
    await age(name, none.body.jid, 31_000);
    expect((await getJob(adminToken, none.body.jid)).status).toBe("timeout");
  });

  it("cancels: status canceled at once, agents told, a second cancel is 409", async () => {
    const { name, adminToken } = await createOrg("jobs-cancel");
    const a = await onlineAgent(adminToken, name, "c-1");
    const created = await submit(adminToken, { targets: ["c-1"], function: "test.sleep", args: { seconds: 60 } });
    const res = await call("POST", `/api/v1/jobs/${created.body.jid}/cancel`, { token: adminToken });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: "canceled" });
    await waitForAction(a.socket, "job.cancel", created.body.jid);
    expect((await call("POST", `/api/v1/jobs/${created.body.jid}/cancel`, { token: adminToken })).status).toBe(409);
  });

  it("deletes a finished job after the retention period", async () => {
    const { name, adminToken } = await createOrg("jobs-retain");
    const a = await onlineAgent(adminToken, name, "t-1");
    const created = await submit(adminToken, { targets: ["t-1"], function: "test.ping" });
    await acceptAndReturn(a.socket, created.body.jid, { success: true, result: true });
    await runInDurableObject(jobObject(name, created.body.jid), (_i, state) => {
      state.storage.sql.exec("UPDATE job SET finished_at = finished_at - ?", 8 * 86_400_000);
    });
    await runDurableObjectAlarm(jobObject(name, created.body.jid));
    expect((await call("GET", `/api/v1/jobs/${created.body.jid}`, { token: adminToken })).status).toBe(404);
  });
});

describe("jobs: API errors, tenancy and the live stream", () => {
  it("answers bad requests as Zester does", async () => {
    const { name, adminToken } = await createOrg("jobs-err");
    await onlineAgent(adminToken, name, "e-1");
    const nomatch = await submit(adminToken, { target: "zzz*", function: "test.ping" });
    expect(nomatch.status).toBe(400);
    expect(nomatch.body.error?.message).toBe("no nodes matched target");
    const bad = await submit(adminToken, { target: "web* and", function: "test.ping" });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.message).toContain("bad target expression");
    const both = await submit(adminToken, { target: "*", targets: ["e-1"], function: "test.ping" });
    expect(both.status).toBe(400);
    const badFn = await submit(adminToken, { target: "*", function: "Ping" });
    expect(badFn.status).toBe(400);
    expect((await call("GET", "/api/v1/jobs/20260101000000000000000", { token: adminToken })).status).toBe(404);
    expect((await call("GET", "/api/v1/jobs/not-a-jid", { token: adminToken })).status).toBe(404);
    const reader = await call<{ token: string }>("POST", "/api/v1/tokens", { token: adminToken, body: { name: "r", scope: "read" } });
    expect((await submit(reader.body.token, { target: "*", function: "test.ping" })).status).toBe(403);
  });

  it("resolves targets in the org object by id, label and facts, over approved and active nodes only", async () => {
    const { name, adminToken } = await createOrg("jobs-resolve");
    for (const id of ["g-1", "g-2", "g-3"]) await onlineAgent(adminToken, name, id);
    const labelled = await call("PATCH", "/api/v1/nodes/g-2/labels", { token: adminToken, body: { labels: { role: "db" } } });
    expect(labelled.status).toBe(200);
    const byLabel = await submit(adminToken, { target: "G@labels.role:db or L@g-3", function: "test.ping" });
    expect(byLabel.status).toBe(202);
    expect(byLabel.body.targets).toEqual(["g-2", "g-3"]);
    const byFacts = await submit(adminToken, { target: "G@os:linux and not g-1", function: "test.ping" });
    expect(byFacts.body.targets).toEqual(["g-2", "g-3"]);
    const listed = await submit(adminToken, { targets: ["g-3", "g-1", "nope"], function: "test.ping" });
    expect(listed.body.targets).toEqual(["g-1", "g-3"]);
    const revoked = await call("POST", "/api/v1/nodes/g-1/revoke", { token: adminToken });
    expect(revoked.status).toBe(200);
    expect((await submit(adminToken, { target: "g-*", function: "test.ping" })).body.targets).toEqual(["g-2", "g-3"]);
  });

  it("previews a target with the org object's resolution: node list --target, any state, bad expressions 400", async () => {
    const { name, adminToken } = await createOrg("jobs-preview");
    for (const id of ["p-1", "p-2", "p-3"]) await onlineAgent(adminToken, name, id);
    await call("PATCH", "/api/v1/nodes/p-2/labels", { token: adminToken, body: { labels: { role: "db" } } });
    expect((await call("POST", "/api/v1/nodes/p-1/revoke", { token: adminToken })).status).toBe(200);
    const ids = async (query: string) => {
      const res = await call<{ nodes: { id: string }[] }>("GET", `/api/v1/nodes?${query}`, { token: adminToken });
      expect(res.status).toBe(200);
      return res.body.nodes.map((n) => n.id);
    };
    expect(await ids(`target=${encodeURIComponent("G@labels.role:db or L@p-3")}`)).toEqual(["p-2", "p-3"]);
    expect(await ids(`target=${encodeURIComponent("p-*")}`)).toEqual(["p-2", "p-3"]);
    expect(await ids(`target=${encodeURIComponent("p-*")}&state=all`)).toEqual(["p-1", "p-2", "p-3"]);
    const inOrg = await orgStub(env, name).previewTarget("p-* and not G@labels.role:db", null);
    expect(inOrg.map((n) => n.id)).toEqual(["p-1", "p-3"]);
    const bad = await call<{ error?: { message: string } }>("GET", `/api/v1/nodes?target=${encodeURIComponent("p-* and")}`, { token: adminToken });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.message).toMatch(/^bad target expression/);
  });

  it("hides another org's jobs", async () => {
    const a = await createOrg("jobs-ten-a");
    const b = await createOrg("jobs-ten-b");
    await onlineAgent(a.adminToken, a.name, "x-1");
    const created = await submit(a.adminToken, { targets: ["x-1"], function: "test.ping" });
    expect((await call("GET", `/api/v1/jobs/${created.body.jid}`, { token: b.adminToken })).status).toBe(404);
    expect((await call("POST", `/api/v1/jobs/${created.body.jid}/cancel`, { token: b.adminToken })).status).toBe(404);
    expect((await call<{ jobs: unknown[] }>("GET", "/api/v1/jobs", { token: b.adminToken })).body.jobs).toEqual([]);
  });

  it("streams the event log, then live events, and ends after job.finished", async () => {
    const { name, adminToken } = await createOrg("jobs-sse");
    const a = await onlineAgent(adminToken, name, "v-1");
    const created = await submit(adminToken, { targets: ["v-1"], function: "test.ping" });
    const { exports } = await import("cloudflare:workers");
    const res = await exports.default.fetch(
      new Request(`http://api.test/api/v1/jobs/${created.body.jid}/events`, { headers: { authorization: `Bearer ${adminToken}` } }),
    );
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    await acceptAndReturn(a.socket, created.body.jid, { success: true, result: true });
    const text = await res.text();
    const types = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => (JSON.parse(l.slice(6)) as { type: string }).type);
    // Acks are learned on demand (job show, the 5 s re-send), so the fast path has no target.acked event.
    expect(types).toEqual(["job.created", "target.dispatched", "target.returned", "job.finished"]);
    const replay = await exports.default.fetch(
      new Request(`http://api.test/api/v1/jobs/${created.body.jid}/events?since=2`, { headers: { authorization: `Bearer ${adminToken}` } }),
    );
    expect((await replay.text()).match(/^data: /gm)).toHaveLength(2);
  });
});

describe("jobs: crash recovery", () => {
  it("dispatches targets a crash left undispatched when the alarm runs", async () => {
    const { name, adminToken, a, created } = await dispatchedToOne("jobs-crash", "z-1");
    // As if start() died after writing the job but before this target's dispatch was recorded.
    await runInDurableObject(jobObject(name, created.body.jid), (_i, state) => {
      state.storage.sql.exec("UPDATE targets SET action_id = NULL");
    });
    const from = a.socket.messages.length;
    expect(await runDurableObjectAlarm(jobObject(name, created.body.jid))).toBe(true);
    const again = await waitForAction(a.socket, "job.dispatch", created.body.jid, from);
    expect(again.action).toMatchObject({ jid: created.body.jid, epoch: 1 });
    await acceptAndReturn(a.socket, created.body.jid, { success: true, result: true });
    expect((await getJob(adminToken, created.body.jid)).status).toBe("complete");
  });
});

describe("jobs: reports from agent schedules", () => {
  it("stores a report as a finished job with source=schedule; a resend makes no second job", async () => {
    const { name, adminToken } = await createOrg("jobs-report");
    const a = await onlineAgent(adminToken, name, "r-1");
    const report = {
      type: "job.report", v: 1, id: "sched-uptime-1", function: "cmd.run", args: { cmd: "uptime" }, metadata: { schedule: "uptime" },
      return: { success: false, retcode: 2, result: { stdout: "", stderr: "no", retcode: 2 }, error: "command exited with code 2", durationMs: 5, startedAt: "2026-11-23T10:00:00.000Z" },
    };
    for (let i = 0; i < 2; i++) {
      const from = a.socket.messages.length;
      a.socket.send(report);
      expect(await a.socket.next("ack", from)).toMatchObject({ ids: ["sched-uptime-1"] });
    }
    const list = await call<{ jobs: { jid: string; function: string; status: string; user: string }[] }>("GET", "/api/v1/jobs", { token: adminToken });
    expect(list.body.jobs).toHaveLength(1);
    expect(list.body.jobs[0]).toMatchObject({ function: "cmd.run", status: "failed", user: "node:r-1" });
    expect(list.body.jobs[0]?.jid.startsWith("20261123100000000")).toBe(true);
    const job = await call<{ job: { metadata: Record<string, string>; targets: { nodeId: string; return: { retcode: number } }[] } }>(
      "GET", `/api/v1/jobs/${list.body.jobs[0]?.jid}`, { token: adminToken },
    );
    expect(job.body.job.metadata).toEqual({ schedule: "uptime", source: "schedule" });
    expect(job.body.job.targets).toMatchObject([{ nodeId: "r-1", return: { retcode: 2 } }]);
    a.socket.ws.close(1000);
  });
});
