import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { type AgentSocket, onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

/**
 * Apps and deployments through the API and the app object. The scheduler Worker is not loaded in
 * this layer (its stand-in places nothing), so these tests place tasks the way it does: through the
 * app object's plan/assignTasks RPCs. The e2e layer runs the real scheduler.
 */

const appObject = (org: string, app: string) => env.APP.get(env.APP.idFromName(`${org}/${app}`));

async function storeArtifact(org: string, content: string): Promise<{ digest: string; size: number; layer: "app" }> {
  const bytes = new TextEncoder().encode(content);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  await env.ARTIFACTS.put(`${org}/sha256/${digest}`, bytes);
  return { digest, size: bytes.byteLength, layer: "app" };
}

async function setup(app = "web") {
  const org = await createOrg("apps");
  const created = await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: app } });
  expect(created.status).toBe(201);
  return { ...org, app };
}

async function deploy(token: string, org: string, app: string, extra: Record<string, unknown> = {}) {
  const artifact = await storeArtifact(org, `app code ${Math.random()}`);
  const res = await call<{ deployment: DeploymentRecord; previewUrl: string; appUrl: string }>("POST", `/api/v1/apps/${app}/deployments`, {
    token,
    body: { artifacts: [artifact], command: "node server.js", ...extra },
  });
  expect(res.status).toBe(201);
  return res.body;
}

function taskStatus(taskId: string, app: string, deploymentId: string, state: string, hostPort: number | null = 40000) {
  return { type: "task.status", v: 1, id: `s-${taskId}-${state}-${Math.random()}`, taskId, app, deploymentId, state, hostPort, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() };
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Reports a task's state from its agent, and waits until the server acked it (stored). */
async function report(socket: AgentSocket, message: ReturnType<typeof taskStatus>) {
  const from = socket.messages.length;
  socket.send(message);
  const ack = await socket.next("ack", from);
  expect(ack.ids).toEqual([message.id]);
}

describe("apps", () => {
  it("creates, lists and shows apps; names are validated; other orgs see nothing", async () => {
    const { adminToken, app } = await setup("shop");
    expect((await call("POST", "/api/v1/apps", { token: adminToken, body: { name: "shop" } })).status).toBe(409);
    const bad = await call<{ error: { code: string } }>("POST", "/api/v1/apps", { token: adminToken, body: { name: "Bad_Name" } });
    expect(bad.status).toBe(400);
    const list = await call<{ apps: Array<{ name: string; promoted: string | null }> }>("GET", "/api/v1/apps", { token: adminToken });
    expect(list.body.apps.map((a) => a.name)).toEqual([app]);
    const other = await createOrg("apps");
    expect((await call("GET", `/api/v1/apps/${app}`, { token: other.adminToken })).status).toBe(404);
    expect((await call<{ apps: unknown[] }>("GET", "/api/v1/apps", { token: other.adminToken })).body.apps).toEqual([]);
  });

  it("refuses a deployment whose artifact is not uploaded, or whose constraint does not parse, and stores nothing", async () => {
    const { adminToken, name, app } = await setup();
    const missing = await call<{ error: { message: string } }>("POST", `/api/v1/apps/${app}/deployments`, {
      token: adminToken,
      body: { artifacts: [{ digest: "a".repeat(64), size: 10, layer: "app" }], command: "x" },
    });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toContain("not uploaded");
    const artifact = await storeArtifact(name, "code");
    const badConstraint = await call("POST", `/api/v1/apps/${app}/deployments`, {
      token: adminToken,
      body: { artifacts: [artifact], command: "x", constraints: ["G@role and"] },
    });
    expect(badConstraint.status).toBe(400);
    const reserved = await call("POST", `/api/v1/apps/${app}/deployments`, {
      token: adminToken,
      body: { artifacts: [artifact], command: "x", env: { PORT: "1" } },
    });
    expect(reserved.status).toBe(400);
    expect((await call<{ deployments: unknown[] }>("GET", `/api/v1/apps/${app}/deployments`, { token: adminToken })).body.deployments).toEqual([]);
  });

  it("a deployment gets preview and app URLs and is found by id alone", async () => {
    const { adminToken, name, app } = await setup();
    const created = await deploy(adminToken, name, app);
    expect(created.deployment.status).toBe("pending");
    expect(created.previewUrl).toBe(`http://${created.deployment.id}.${app}.${name}.localhost:47000`);
    expect(created.appUrl).toBe(`http://${app}.${name}.localhost:47000`);
    const byId = await call<{ deployment: DeploymentRecord }>("GET", `/api/v1/deployments/${created.deployment.id}`, { token: adminToken });
    expect(byId.body.deployment.spec.command).toBe("node server.js");
    expect((await call("GET", "/api/v1/deployments/d000000000000", { token: adminToken })).status).toBe(404);
  });
});

describe("tasks through a node's socket", () => {
  it("a placed task is started on its node, becomes healthy, and the first deployment is promoted", async () => {
    const { adminToken, name, app } = await setup();
    const { socket } = await onlineAgent(adminToken, name, "web-1");
    const { deployment } = await deploy(adminToken, name, app, { env: { GREETING: "hi" } });
    await call("PUT", `/api/v1/apps/${app}/env/API_KEY`, { token: adminToken, body: { value: "s3cret", secret: true } });

    const plan = await appObject(name, app).plan();
    expect(plan?.deployments.map((d) => [d.id, d.replicas, d.tasks.length])).toEqual([[deployment.id, 1, 0]]);
    const [taskId] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    const start = await waitFor(
      async () => socket.messages.find((m) => (m.action as { kind?: string } | undefined)?.kind === "task.start"),
      (m) => m !== undefined,
      "a task.start",
    );
    const action = start?.action as { kind: string; taskId: string; env: Record<string, string>; artifacts: unknown[] };
    expect(action.kind).toBe("task.start");
    expect(action.taskId).toBe(taskId);
    // App secrets are opened for the task; the deployment's own env is merged on top.
    expect(action.env).toEqual({ API_KEY: "s3cret", GREETING: "hi" });

    await report(socket, taskStatus(taskId as string, app, deployment.id, "starting"));
    await report(socket, taskStatus(taskId as string, app, deployment.id, "healthy", 41234));
    const shown = await call<{ deployment: DeploymentRecord }>("GET", `/api/v1/deployments/${deployment.id}`, { token: adminToken });
    expect(shown.body.deployment.status).toBe("healthy");
    expect(shown.body.deployment.promoted).toBe(true);
    expect(shown.body.deployment.tasks[0]).toMatchObject({ taskId, nodeId: "web-1", state: "healthy", hostPort: 41234 });
    // Room already taken: a second assignment for a deployment at its replica count changes nothing.
    expect(await appObject(name, app).assignTasks(deployment.id, ["web-1"])).toEqual([]);
  });

  it("a status for a task of another node is ignored; an unknown task is told to stop", async () => {
    const { adminToken, name, app } = await setup();
    const one = await onlineAgent(adminToken, name, "web-1");
    const two = await onlineAgent(adminToken, name, "web-2");
    const { deployment } = await deploy(adminToken, name, app);
    const [taskId] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    await report(two.socket, taskStatus(taskId as string, app, deployment.id, "healthy"));
    const record = await appObject(name, app).deployment(deployment.id);
    expect(record?.tasks[0]?.state).toBe("assigned");

    const from = one.socket.messages.length;
    await report(one.socket, taskStatus("t0000000000zz", app, deployment.id, "healthy"));
    const stop = await waitFor(
      async () => one.socket.messages.slice(from).find((m) => (m.action as { kind?: string } | undefined)?.kind === "task.stop"),
      (m) => m !== undefined,
      "a task.stop",
    );
    expect((stop?.action as { taskId: string }).taskId).toBe("t0000000000zz");
  });

  it("promote is rolling: old tasks stop only once the new deployment is healthy; rollback re-promotes the previous one", async () => {
    const { adminToken, name, app } = await setup();
    const { socket } = await onlineAgent(adminToken, name, "web-1");
    const first = (await deploy(adminToken, name, app)).deployment;
    const [firstTask] = await appObject(name, app).assignTasks(first.id, ["web-1"]);
    await report(socket, taskStatus(firstTask as string, app, first.id, "healthy"));

    const second = (await deploy(adminToken, name, app)).deployment;
    const [secondTask] = await appObject(name, app).assignTasks(second.id, ["web-1"]);
    const promoted = await call<{ deployment: DeploymentRecord }>("POST", `/api/v1/deployments/${second.id}/promote`, { token: adminToken });
    expect(promoted.status).toBe(200);
    // Not healthy yet: the first stays promoted and running.
    let firstNow = await appObject(name, app).deployment(first.id);
    expect(firstNow?.promoted).toBe(true);
    expect(firstNow?.tasks[0]?.desired).toBe("run");

    await report(socket, taskStatus(secondTask as string, app, second.id, "healthy"));
    firstNow = await appObject(name, app).deployment(first.id);
    expect(firstNow?.promoted).toBe(false);
    expect(firstNow?.tasks[0]).toMatchObject({ desired: "stop", state: "stopping" });
    expect((await appObject(name, app).deployment(second.id))?.promoted).toBe(true);

    const rolled = await call<{ deployment: DeploymentRecord; from: string }>("POST", `/api/v1/apps/${app}/rollback`, { token: adminToken, body: {} });
    expect(rolled.status).toBe(200);
    expect(rolled.body.from).toBe(second.id);
    expect(rolled.body.deployment.id).toBe(first.id);
    // The first needs a task again; the scheduler will see it in the plan.
    const plan = await appObject(name, app).plan();
    expect(plan?.deployments.find((d) => d.id === first.id)?.tasks).toEqual([]);
    const [again] = await appObject(name, app).assignTasks(first.id, ["web-1"]);
    await report(socket, taskStatus(again as string, app, first.id, "healthy"));
    // Rolled back from: the second was promoted once, so it is no fresh preview and stops, though it is the newest.
    expect((await appObject(name, app).deployment(first.id))?.promoted).toBe(true);
    expect((await appObject(name, app).deployment(second.id))?.tasks[0]).toMatchObject({ desired: "stop", state: "stopping" });
  });

  it("scale changes the promoted deployment's replicas and stops the surplus", async () => {
    const { adminToken, name, app } = await setup();
    const { socket } = await onlineAgent(adminToken, name, "web-1");
    const { deployment } = await deploy(adminToken, name, app);
    const [a] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    await report(socket, taskStatus(a as string, app, deployment.id, "healthy"));
    const up = await call<{ deployment: DeploymentRecord }>("POST", `/api/v1/apps/${app}/scale`, { token: adminToken, body: { replicas: 2 } });
    expect(up.body.deployment.replicas).toBe(2);
    expect(up.body.deployment.status).toBe("deploying");
    const [b] = await appObject(name, app).assignTasks(deployment.id, ["web-1", "web-1"]);
    expect(b).toBeDefined();
    const down = await call<{ deployment: DeploymentRecord }>("POST", `/api/v1/apps/${app}/scale`, { token: adminToken, body: { replicas: 1 } });
    const running = down.body.deployment.tasks.filter((t) => t.desired === "run");
    // The healthy one stays; the one still starting is stopped.
    expect(running.map((t) => t.taskId)).toEqual([a]);
    expect((await call("POST", `/api/v1/apps/${app}/scale`, { token: adminToken, body: { replicas: -1 } })).status).toBe(400);
  });

  it("a lost task is given up and its deployment wants a replacement", async () => {
    const { adminToken, name, app } = await setup();
    await onlineAgent(adminToken, name, "web-1");
    const { deployment } = await deploy(adminToken, name, app);
    const [taskId] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    await appObject(name, app).markLost([taskId as string], "node offline");
    const record = await appObject(name, app).deployment(deployment.id);
    expect(record?.tasks[0]).toMatchObject({ state: "lost", desired: "stop", message: "node offline" });
    expect(record?.status).toBe("pending");
    const plan = await appObject(name, app).plan();
    expect(plan?.deployments[0]?.tasks).toEqual([]);
  });

  it("an inventory after reconnect stops tasks nobody wants", async () => {
    const { adminToken, name, app } = await setup();
    const { socket } = await onlineAgent(adminToken, name, "web-1");
    const { deployment } = await deploy(adminToken, name, app);
    const [taskId] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    const from = socket.messages.length;
    socket.send({
      type: "task.inventory",
      v: 1,
      tasks: [
        { taskId, app, deploymentId: deployment.id, state: "healthy", hostPort: 40001 },
        { taskId: "t00000000stal", app, deploymentId: deployment.id, state: "healthy", hostPort: 40002 },
      ],
    });
    const stop = await waitFor(
      async () => socket.messages.slice(from).find((m) => (m.action as { kind?: string } | undefined)?.kind === "task.stop"),
      (m) => m !== undefined,
      "a task.stop",
    );
    expect((stop?.action as { taskId: string }).taskId).toBe("t00000000stal");
    expect((await appObject(name, app).deployment(deployment.id))?.tasks[0]?.state).toBe("healthy");
  });
});

describe("env", () => {
  it("stores secrets sealed, lists them hidden, and reveals them only to admins", async () => {
    const { adminToken, name, app } = await setup();
    expect((await call("PUT", `/api/v1/apps/${app}/env/DB_URL`, { token: adminToken, body: { value: "postgres://x", secret: true } })).status).toBe(200);
    expect((await call("PUT", `/api/v1/apps/${app}/env/MODE`, { token: adminToken, body: { value: "prod" } })).status).toBe(200);
    const listed = await call<{ env: Array<{ name: string; value: string | null; secret: boolean }> }>("GET", `/api/v1/apps/${app}/env`, { token: adminToken });
    expect(listed.body.env).toMatchObject([
      { name: "DB_URL", secret: true, value: null },
      { name: "MODE", secret: false, value: "prod" },
    ]);
    const revealed = await call<{ env: Array<{ value: string | null }> }>("GET", `/api/v1/apps/${app}/env?reveal=1`, { token: adminToken });
    expect(revealed.body.env[0]?.value).toBe("postgres://x");
    const operator = await createToken(adminToken, "ci", "operate");
    expect((await call("GET", `/api/v1/apps/${app}/env?reveal=1`, { token: operator })).status).toBe(403);

    const stored = await runInDurableObject(appObject(name, app), (_instance, state) =>
      state.storage.sql.exec<{ value: string }>("SELECT value FROM env WHERE name = 'DB_URL'").one().value,
    );
    expect(stored).not.toContain("postgres");
    expect(stored.startsWith("v1.")).toBe(true);

    expect((await call("PUT", `/api/v1/apps/${app}/env/PORT`, { token: adminToken, body: { value: "1" } })).status).toBe(400);
    expect((await call("PUT", `/api/v1/apps/${app}/env/bad-name`, { token: adminToken, body: { value: "1" } })).status).toBe(400);
    expect((await call("DELETE", `/api/v1/apps/${app}/env/MODE`, { token: adminToken })).status).toBe(200);
    expect((await call("DELETE", `/api/v1/apps/${app}/env/MODE`, { token: adminToken })).status).toBe(404);
  });
});

describe("logs", () => {
  it("stores the lines of tasks the sending node runs, drops others, and acks the batch", async () => {
    const { adminToken, name, app } = await setup();
    const { socket } = await onlineAgent(adminToken, name, "web-1");
    const { deployment } = await deploy(adminToken, name, app);
    const [taskId] = await appObject(name, app).assignTasks(deployment.id, ["web-1"]);
    const line = (text: string, task: string) => ({ taskId: task, app, deploymentId: deployment.id, stream: "stdout", ts: new Date().toISOString(), line: text });
    const from = socket.messages.length;
    socket.send({ type: "task.logs", v: 1, id: "logs-1", lines: [line("hello", taskId as string), line("not mine", "t00000000othr")] });
    expect((await socket.next("ack", from)).ids).toEqual(["logs-1"]);
    const logs = await call<{ lines: Array<{ line: string; nodeId: string }> }>("GET", `/api/v1/apps/${app}/logs`, { token: adminToken });
    expect(logs.body.lines.map((l) => [l.line, l.nodeId])).toEqual([["hello", "web-1"]]);
    expect((await call("GET", `/api/v1/apps/${app}/logs?since=yesterday`, { token: adminToken })).status).toBe(400);
  });
});
