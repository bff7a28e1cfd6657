import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { challenge, connect, connectRaw, enroll, enrollmentToken, makeAgent } from "./agent-helpers.ts";
import { call, createOrg } from "./helpers.ts";

interface NodeList {
  nodes: { id: string; state: string; online: boolean; labels: Record<string, string>; os: string | null }[];
}

describe("enrollment", () => {
  it("goes pending → approved → active, with labels from the token", async () => {
    const { name, adminToken } = await createOrg("enr");
    const token = await enrollmentToken(adminToken, { labels: { env: "prod" } });
    expect(token).toMatch(/^zet_/);
    const agent = await makeAgent("web-1");
    const enrolled = await enroll(agent, token);
    expect(enrolled.status).toBe(201);
    expect(enrolled.body).toEqual({ org: name, nodeId: "web-1", state: "pending" });

    const pending = await call<NodeList>("GET", "/api/v1/nodes?state=pending", { token: adminToken });
    expect(pending.body.nodes.map((n) => [n.id, n.labels.env, n.os])).toEqual([["web-1", "prod", "linux"]]);
    const blocked = await challenge(name, "web-1");
    expect(blocked.status).toBe(403);
    expect(blocked.body.error?.details?.state).toBe("pending");

    const approved = await call<{ node: { state: string } }>("POST", "/api/v1/nodes/web-1/approve", { token: adminToken });
    expect(approved.body.node.state).toBe("approved");
    const socket = await connect(name, agent);
    expect(await socket.next("welcome")).toMatchObject({ org: name, nodeId: "web-1", heartbeatSeconds: 1 });
    const list = await call<NodeList>("GET", "/api/v1/nodes", { token: adminToken });
    expect(list.body.nodes).toMatchObject([{ id: "web-1", state: "active", online: true }]);
    socket.ws.close(1000);
  });

  it("rejects and revokes as final states", async () => {
    const { name, adminToken } = await createOrg("final");
    const token = await enrollmentToken(adminToken, { uses: 2 });
    const a = await makeAgent("a");
    const b = await makeAgent("b");
    await enroll(a, token);
    await enroll(b, token);
    const rejected = await call("POST", "/api/v1/nodes/a/reject", { token: adminToken, body: { reason: "unknown host" } });
    expect(rejected.status).toBe(200);
    const approveRejected = await call<{ error: { code: string; message: string } }>("POST", "/api/v1/nodes/a/approve", {
      token: adminToken,
    });
    expect(approveRejected.status).toBe(409);
    expect(approveRejected.body.error.message).toBe("cannot approve node 'a': it is rejected");
    const revokePending = await call("POST", "/api/v1/nodes/b/revoke", { token: adminToken });
    expect(revokePending.status).toBe(409);
    const all = await call<NodeList>("GET", "/api/v1/nodes?state=all", { token: adminToken });
    expect(all.body.nodes.map((n) => `${n.id}:${n.state}`)).toEqual(["a:rejected", "b:pending"]);
    expect((await challenge(name, "a")).body.error?.details?.state).toBe("rejected");
  });

  it("approves every pending node at once", async () => {
    const { adminToken } = await createOrg("bulk");
    const token = await enrollmentToken(adminToken, { uses: 3 });
    for (const id of ["n1", "n2", "n3"]) await enroll(await makeAgent(id), token);
    const res = await call<NodeList>("POST", "/api/v1/nodes/approve-pending", { token: adminToken });
    expect(res.body.nodes.map((n) => n.state)).toEqual(["approved", "approved", "approved"]);
  });

  it("never gives a node id to another key, and repeats with the same key are harmless", async () => {
    const { adminToken } = await createOrg("idclash");
    const token = await enrollmentToken(adminToken, { uses: 5 });
    const first = await makeAgent("db-1");
    expect((await enroll(first, token)).status).toBe(201);
    const again = await enroll(first, token);
    expect(again.status).toBe(201);
    expect(again.body.state).toBe("pending");
    const imposter = await makeAgent("db-1");
    const clash = await enroll(imposter, token);
    expect(clash.status).toBe(409);
    expect(clash.body.error?.message).toContain("another key");
    const tokens = await call<{ tokens: { usesLeft: number }[] }>("GET", "/api/v1/enrollment-tokens", { token: adminToken });
    expect(tokens.body.tokens[0]?.usesLeft).toBe(4);
  });

  it("explains expired, used-up, revoked, malformed and foreign enrollment tokens", async () => {
    const { name, adminToken } = await createOrg("badtok");
    const single = await enrollmentToken(adminToken, { uses: 1 });
    expect((await enroll(await makeAgent("x1"), single)).status).toBe(201);
    const usedUp = await enroll(await makeAgent("x2"), single);
    expect(usedUp.status).toBe(401);
    expect(usedUp.body.error?.message).toBe("enrollment token has no uses left");

    const expiring = await enrollmentToken(adminToken);
    const org = env.ORG.get(env.ORG.idFromName(name));
    await runInDurableObject(org, (_i, state) => {
      state.storage.sql.exec("UPDATE enrollment_tokens SET expires_at = ? WHERE used = 0", Date.now() - 1);
    });
    const expired = await enroll(await makeAgent("x3"), expiring);
    expect(expired.body.error?.message).toBe("enrollment token expired");

    const revokable = await enrollmentToken(adminToken);
    const id = revokable.split("_")[2];
    await call("DELETE", `/api/v1/enrollment-tokens/${id}`, { token: adminToken });
    expect((await enroll(await makeAgent("x4"), revokable)).body.error?.message).toBe("enrollment token was revoked");

    // An API token is not an enrollment token, and another org's name inside a token finds nothing.
    expect((await enroll(await makeAgent("x5"), adminToken)).body.error?.message).toContain("malformed enrollment token");
    const other = await createOrg("badtok-other");
    const foreign = (await enrollmentToken(other.adminToken)).replace(`_${other.name}_`, `_${name}_`);
    expect((await enroll(await makeAgent("x6"), foreign)).body.error?.message).toBe("invalid enrollment token");
    const nodes = await call<NodeList>("GET", "/api/v1/nodes?state=all", { token: adminToken });
    expect(nodes.body.nodes.map((n) => n.id)).toEqual(["x1"]);
  });

  it("validates node ids and facts", async () => {
    const { adminToken } = await createOrg("badid");
    const token = await enrollmentToken(adminToken);
    const badId = await enroll(await makeAgent("-bad id"), token);
    expect(badId.status).toBe(400);
    expect(badId.body.error?.message).toMatch(/^invalid request body: nodeId/);
    const long = await enroll(await makeAgent("a".repeat(129)), token);
    expect(long.status).toBe(400);
  });
});

describe("connect handshake", () => {
  it("refuses a bad signature and a replayed nonce", async () => {
    const { name, adminToken } = await createOrg("hs");
    const agent = await makeAgent("h1");
    await enroll(agent, await enrollmentToken(adminToken, { autoApprove: true }));
    const other = await makeAgent("h1");
    const ch1 = await challenge(name, "h1");
    const forged = await connectRaw(name, "h1", ch1.body.nonce, await other.sign(name, ch1.body.nonce));
    expect(forged.status).toBe(401);
    // The nonce was spent by the failed attempt too.
    const reuse = await connectRaw(name, "h1", ch1.body.nonce, await agent.sign(name, ch1.body.nonce));
    expect(reuse.status).toBe(401);

    const ch2 = await challenge(name, "h1");
    const sig = await agent.sign(name, ch2.body.nonce);
    const good = await connectRaw(name, "h1", ch2.body.nonce, sig);
    expect(good.status).toBe(101);
    good.webSocket?.accept();
    const replay = await connectRaw(name, "h1", ch2.body.nonce, sig);
    expect(replay.status).toBe(401);
    expect(await replay.json()).toMatchObject({ error: { message: "unknown, used or expired nonce" } });
    good.webSocket?.close(1000);
  });

  it("answers unknown nodes and foreign orgs as not enrolled", async () => {
    const a = await createOrg("hs-a");
    const b = await createOrg("hs-b");
    const agent = await makeAgent("shared");
    await enroll(agent, await enrollmentToken(a.adminToken, { autoApprove: true }));
    expect((await challenge(b.name, "shared")).status).toBe(401);
    expect((await challenge(a.name, "ghost")).status).toBe(401);
  });
});
