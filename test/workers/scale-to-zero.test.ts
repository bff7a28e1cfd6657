import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { FRAME } from "../../protocol/tunnel.ts";
import { handleProxy, type ProxyEnv } from "../../workers/proxy/index.ts";
import { call, createOrg } from "./helpers.ts";
import { answer, openOf, type TunnelAgent, tunnelAgent } from "./tunnel-agent.ts";

/**
 * Scale to zero in the app object (idle alarm, touch, wake) and the proxy's hold while a deployment wakes.
 * The scheduler is not loaded in this layer (its stand-in places nothing), so tests place tasks the way it
 * does, through plan/assignTasks, and report them healthy from a test agent. The idle clock is moved by
 * rewriting `active_at`, and the alarm is run on demand, so nothing here waits out a timeout.
 */

const appObject = (org: string, app: string) => env.APP.get(env.APP.idFromName(`${org}/${app}`));

async function artifact(org: string) {
  const bytes = new TextEncoder().encode(`code ${Math.random()}`);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  await env.ARTIFACTS.put(`${org}/sha256/${digest}`, bytes);
  return { digest, size: bytes.byteLength, layer: "app" };
}

function createDeployment(token: string, org: string, app: string, extra: Record<string, unknown>) {
  return artifact(org).then((a) =>
    call<{ deployment: DeploymentRecord; error?: { code: string; message: string; details: Array<{ path: string }> } }>("POST", `/api/v1/apps/${app}/deployments`, {
      token,
      body: { artifacts: [a], command: "node server.js", ...extra },
    }),
  );
}

/** Reports a task's state from its agent and waits for the ack (stored). */
async function report(agent: TunnelAgent, taskId: string, app: string, deploymentId: string, state: string, hostPort: number | null = 41000): Promise<void> {
  const id = `s-${taskId}-${state}-${Math.random()}`;
  agent.ws.send(JSON.stringify({ type: "task.status", v: 1, id, taskId, app, deploymentId, state, hostPort, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() }));
  for (let i = 0; i < 300; i++) {
    if (agent.messages.some((m) => m.type === "ack" && (m.ids as string[]).includes(id))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("task.status not acked");
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** An org with app `web`, one agent, and a deployment (`extra` on top of min 0, 60 s idle) with its tasks healthy. */
async function servedScalable(extra: Record<string, unknown> = {}) {
  const org = await createOrg("stz");
  const app = "web";
  expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: app } })).status).toBe(201);
  const agent = await tunnelAgent(org.adminToken, org.name, "web-1");
  const created = await createDeployment(org.adminToken, org.name, app, { minReplicas: 0, idleTimeoutSeconds: 60, ...extra });
  expect(created.status).toBe(201);
  const deployment = created.body.deployment;
  const stub = appObject(org.name, app);
  const tasks = await stub.assignTasks(deployment.id, Array(deployment.replicas).fill("web-1"));
  for (const [i, taskId] of tasks.entries()) await report(agent, taskId, app, deployment.id, "healthy", 41000 + i);
  expect((await stub.deployment(deployment.id))?.status).toBe("healthy");
  return { org, app, agent, deployment, stub, tasks };
}

/** Moves the deployment's idle clock back, as if its last activity were `ms` earlier. */
async function age(stub: ReturnType<typeof appObject>, deploymentId: string, ms: number): Promise<void> {
  await runInDurableObject(stub, (_instance, state) => {
    state.storage.sql.exec("UPDATE deployment_activity SET active_at = active_at - ? WHERE deployment_id = ?", ms, deploymentId);
  });
}

/** The types in the app's event log, oldest first. */
function eventTypes(stub: ReturnType<typeof appObject>): Promise<string[]> {
  return runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ type: string }>("SELECT type FROM events ORDER BY seq").toArray().map((e) => e.type));
}

const taskStops = (agent: TunnelAgent) => agent.messages.filter((m) => (m.action as { kind?: string } | undefined)?.kind === "task.stop").map((m) => (m.action as { taskId: string }).taskId);

describe("scale to zero: configuration", () => {
  it("stores minReplicas and idleTimeoutSeconds in the spec, and refuses bad values without storing anything", async () => {
    const org = await createOrg("stz");
    expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } })).status).toBe(201);
    const tooMany = await createDeployment(org.adminToken, org.name, "web", { replicas: 1, minReplicas: 2 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error?.code).toBe("invalid_body");
    expect(tooMany.body.error?.message).toBe("invalid request body: minReplicas: minReplicas cannot be more than replicas");
    const zeroTimeout = await createDeployment(org.adminToken, org.name, "web", { minReplicas: 0, idleTimeoutSeconds: 0 });
    expect(zeroTimeout.status).toBe(400);
    expect(zeroTimeout.body.error?.details.map((d) => d.path)).toEqual(["idleTimeoutSeconds"]);
    const negative = await createDeployment(org.adminToken, org.name, "web", { minReplicas: -1 });
    expect(negative.status).toBe(400);
    expect((await appObject(org.name, "web").listDeployments()).length).toBe(0);

    const ok = await createDeployment(org.adminToken, org.name, "web", { replicas: 2, minReplicas: 0, idleTimeoutSeconds: 3 });
    expect(ok.status).toBe(201);
    expect(ok.body.deployment.spec).toMatchObject({ minReplicas: 0, idleTimeoutSeconds: 3 });
    expect(ok.body.deployment.idleSince).toBeNull();
  });

  it("a deployment without a minimum never scales down: no idle hint for the proxy, and wake refuses", async () => {
    const org = await createOrg("stz");
    expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } })).status).toBe(201);
    const { deployment } = (await createDeployment(org.adminToken, org.name, "web", {})).body;
    const stub = appObject(org.name, "web");
    expect((await stub.route(deployment.id))?.idle).toBeUndefined();
    expect(await stub.wake(deployment.id)).toBe("not_wakeable");
    expect((await stub.deployment(deployment.id))?.idleSince).toBeUndefined();
  });
});

describe("scale to zero: the app object", () => {
  it("tells the proxy how often to report requests, and that it scales to zero", async () => {
    const { stub, deployment } = await servedScalable();
    expect((await stub.route(deployment.id))?.idle).toEqual({ touchEveryMs: 5_000, scalesToZero: true });
    expect((await stub.route(null))?.idle).toEqual({ touchEveryMs: 5_000, scalesToZero: true });
  });

  it("after the idle timeout without requests, stops every task through the normal stop path and reads idle", async () => {
    const { stub, agent, deployment, tasks } = await servedScalable();
    await age(stub, deployment.id, 61_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const idle = (await stub.deployment(deployment.id)) as DeploymentRecord;
    expect(idle.status).toBe("idle");
    expect(idle.idleSince).not.toBeNull();
    expect(idle.tasks).toMatchObject([{ taskId: tasks[0], desired: "stop", state: "stopping" }]);
    await waitFor(async () => taskStops(agent), (ids) => ids.includes(tasks[0] as string), "a task.stop");
    // The scheduler sees nothing to place; the proxy sees no task, and that it may wake it.
    expect((await stub.plan())?.deployments.find((d) => d.id === deployment.id)?.replicas).toBe(0);
    expect(await stub.route(deployment.id)).toMatchObject({ tasks: [], idle: { scalesToZero: true } });
    // The agent's report of the stopped task keeps it idle.
    await report(agent, tasks[0] as string, "web", deployment.id, "stopped", null);
    expect((await stub.deployment(deployment.id))?.status).toBe("idle");
    const types = await eventTypes(stub);
    expect(types.filter((t) => t === "deployment.idle")).toHaveLength(1);
    expect(types).toContain("task.stopping");
  });

  it("a request's touch restarts the idle clock, so an alarm then scales nothing down", async () => {
    const { stub, deployment } = await servedScalable();
    await age(stub, deployment.id, 61_000);
    await stub.touch(deployment.id);
    await runDurableObjectAlarm(stub);
    expect((await stub.deployment(deployment.id))?.status).toBe("healthy");
    const next = await runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
    expect(next).toBeGreaterThan(Date.now() + 50_000);
  });

  it("a deployment still starting is never scaled down, however old its clock", async () => {
    const org = await createOrg("stz");
    expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } })).status).toBe(201);
    const agent = await tunnelAgent(org.adminToken, org.name, "web-1");
    const { deployment } = (await createDeployment(org.adminToken, org.name, "web", { minReplicas: 0, idleTimeoutSeconds: 1 })).body;
    const stub = appObject(org.name, "web");
    const [taskId] = await stub.assignTasks(deployment.id, ["web-1"]);
    await report(agent, taskId as string, "web", deployment.id, "starting");
    await age(stub, deployment.id, 60_000);
    await runInDurableObject(stub, (instance) => instance.alarm());
    expect((await stub.deployment(deployment.id))?.status).toBe("deploying");
    expect(taskStops(agent)).toEqual([]);
  });

  it("wake is idempotent: the first brings the replicas back, later ones change nothing", async () => {
    const { stub, agent, deployment } = await servedScalable();
    await age(stub, deployment.id, 61_000);
    await runDurableObjectAlarm(stub);
    expect(await stub.wake(deployment.id)).toBe("woken");
    expect(await stub.wake(deployment.id)).toBe("awake");
    const woken = (await stub.deployment(deployment.id)) as DeploymentRecord;
    expect(woken.status).toBe("pending");
    expect(woken.idleSince).toBeNull();
    expect((await stub.plan())?.deployments.find((d) => d.id === deployment.id)?.replicas).toBe(1);
    expect((await eventTypes(stub)).filter((t) => t === "deployment.woken")).toHaveLength(1);
    // Placed and healthy again, it serves, and its clock starts over from then.
    const [again] = await stub.assignTasks(deployment.id, ["web-1"]);
    await report(agent, again as string, "web", deployment.id, "healthy", 41005);
    expect((await stub.route(deployment.id))?.tasks).toEqual([{ taskId: again, nodeId: "web-1", hostPort: 41005 }]);
    await runDurableObjectAlarm(stub);
    expect((await stub.deployment(deployment.id))?.status).toBe("healthy");
  });

  it("with a minimum above zero, idles down to it, and a request's touch brings the rest back", async () => {
    const { stub, deployment, tasks } = await servedScalable({ replicas: 2, minReplicas: 1 });
    expect((await stub.route(deployment.id))?.idle).toEqual({ touchEveryMs: 5_000, scalesToZero: false });
    await age(stub, deployment.id, 61_000);
    await runDurableObjectAlarm(stub);
    const idle = (await stub.deployment(deployment.id)) as DeploymentRecord;
    expect(idle.status).toBe("healthy");
    expect(idle.idleSince).not.toBeNull();
    expect(idle.tasks.filter((t) => t.desired === "run")).toHaveLength(1);
    expect(tasks).toContain(idle.tasks.find((t) => t.desired === "run")?.taskId);
    await stub.touch(deployment.id);
    expect((await stub.deployment(deployment.id))?.idleSince).toBeNull();
    expect((await stub.plan())?.deployments.find((d) => d.id === deployment.id)?.replicas).toBe(2);
  });

  it("scaling by hand wakes an idle deployment", async () => {
    const { org, app, stub, deployment } = await servedScalable({ replicas: 1 });
    await age(stub, deployment.id, 61_000);
    await runDurableObjectAlarm(stub);
    const scaled = await call<{ deployment: DeploymentRecord }>("POST", `/api/v1/apps/${app}/scale`, { token: org.adminToken, body: { replicas: 2 } });
    expect(scaled.body.deployment).toMatchObject({ replicas: 2, idleSince: null, status: "pending" });
  });
});

describe("scale to zero: the proxy", () => {
  const proxyEnv = (wakeTimeoutSeconds: string): ProxyEnv => ({
    ORG: env.ORG,
    APP: env.APP,
    NODE: env.NODE,
    HOST_ROUTES: env.HOST_ROUTES,
    PREVIEW_DOMAIN: "localhost",
    PROXY_TIMEOUT_SECONDS: "5",
    WAKE_TIMEOUT_SECONDS: wakeTimeoutSeconds,
  });

  function get(host: string, wakeTimeoutSeconds: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("host", host);
    return handleProxy(new Request(`http://${host}/`, { ...init, headers }), proxyEnv(wakeTimeoutSeconds));
  }

  async function idleDeployment() {
    const served = await servedScalable();
    await age(served.stub, served.deployment.id, 61_000);
    await runDurableObjectAlarm(served.stub);
    expect((await served.stub.deployment(served.deployment.id))?.status).toBe("idle");
    return { ...served, host: `${served.deployment.id}.web.${served.org.name}.localhost:47000` };
  }

  it("wakes a deployment scaled to zero and holds every request until a task is healthy, then serves each, bodies intact", async () => {
    const { stub, agent, deployment, host } = await idleDeployment();
    const first = get(host, "20");
    const second = get(host, "20", { method: "POST", body: "the held body" });
    // The wake reached the app object: it wants its replica back. The scheduler would place it; here the test does.
    await waitFor(async () => (await stub.plan())?.deployments.find((d) => d.id === deployment.id)?.replicas, (n) => n === 1, "the wake");
    const [taskId] = await stub.assignTasks(deployment.id, ["web-1"]);
    await report(agent, taskId as string, "web", deployment.id, "healthy", 41009);
    const opens = await waitFor(async () => agent.frames.filter((f) => f.type === FRAME.open), (f) => f.length >= 2, "both held requests at the task");
    expect(opens.map((f) => openOf(f)).map((o) => [o.method, o.taskId, o.port]).sort()).toEqual([["GET", taskId, 41009], ["POST", taskId, 41009]]);
    const post = opens.find((f) => openOf(f).method === "POST") as (typeof opens)[number];
    await agent.frame(FRAME.end, post.streamId);
    const body = agent.frames.filter((f) => f.type === FRAME.data && f.streamId === post.streamId).map((f) => new TextDecoder().decode(f.payload));
    expect(body.join("")).toBe("the held body");
    for (const frame of opens) answer(agent, frame.streamId, 200, `served ${openOf(frame).method}`);
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([await a.text(), await b.text()]).toEqual(["served GET", "served POST"]);
  });

  it("reports a served deployment's requests to its app object, at most once per touch interval per isolate", async () => {
    const { stub, agent, deployment, org } = await servedScalable();
    await age(stub, deployment.id, 30_000);
    const before = Date.now();
    const work: Array<Promise<unknown>> = [];
    const host = `${deployment.id}.web.${org.name}.localhost:47000`;
    const send = () => handleProxy(new Request(`http://${host}/`, { headers: { host } }), proxyEnv("5"), undefined, (w) => work.push(w));
    const pending = [send(), send()];
    const opens = await waitFor(async () => agent.frames.filter((f) => f.type === FRAME.open), (f) => f.length >= 2, "both requests at the task");
    for (const frame of opens) answer(agent, frame.streamId, 200, "ok");
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([200, 200]);
    expect(work).toHaveLength(1);
    await Promise.all(work);
    const activeAt = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<{ active_at: number }>("SELECT active_at FROM deployment_activity WHERE deployment_id = ?", deployment.id).one().active_at,
    );
    expect(activeAt).toBeGreaterThanOrEqual(before);
  });

  it("answers 503 with Retry-After in one line when no task is healthy by the wake timeout", async () => {
    const { host, deployment } = await idleDeployment();
    const res = await get(host, "1");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    const text = await res.text();
    expect(text.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(text).error).toEqual({ code: "unavailable", message: `deployment ${deployment.id} is waking up; try again shortly` });
  });

  it("a deployment that does not scale to zero still answers 503 at once when nothing is healthy", async () => {
    const org = await createOrg("stz");
    expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } })).status).toBe(201);
    const { deployment } = (await createDeployment(org.adminToken, org.name, "web", {})).body;
    const res = await get(`${deployment.id}.web.${org.name}.localhost:47000`, "30");
    expect(res.status).toBe(503);
    expect(JSON.parse(await res.text()).error.message).toBe(`deployment ${deployment.id} has no healthy task; try again shortly`);
    expect(await appObject(org.name, "web").wake(deployment.id)).toBe("not_wakeable");
  });
});
