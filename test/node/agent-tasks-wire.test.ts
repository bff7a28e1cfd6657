import { cpSync, existsSync, readFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentConnection } from "../../agent/src/connection.ts";
import { ed25519Signer, generateNodeKey, type NodeKey } from "../../agent/src/keys.ts";
import { Logger } from "../../agent/src/log.ts";
import { type AgentState, openAgentState } from "../../agent/src/state/agent-state.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import { writeIdentity, writePrivateKey } from "../../agent/src/state/identity.ts";
import { LogOutbox } from "../../agent/src/state/log-outbox.ts";
import { LogShipper } from "../../agent/src/tasks/log-shipper.ts";
import { TaskSupervisor } from "../../agent/src/tasks/supervisor.ts";
import { newTaskFile, TaskStore } from "../../agent/src/tasks/task-store.ts";
import { TaskInventoryMessage, TaskLogsMessage, TaskStatusMessage } from "../../protocol/deployments.ts";
import { type AgentSession, until, useFakeControlPlane } from "./helpers/agent-control-plane.ts";
import { FIXED_FACTS } from "./helpers/agent-jobs.ts";
import { startAgent as startAgentProcess, useAgentProcesses } from "./helpers/agent-run.ts";
import { FAST_TIMINGS, FixtureArtifacts, getText, HELLO_APP, helloSpec } from "./helpers/agent-tasks.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** Tasks over the agent's real connection: task.start/stop in, task.status, task.logs and task.inventory out. */

const tempDir = useTempDirs();
useAgentProcesses();
const { plane, cleanups } = useFakeControlPlane();
const WAIT_MS = 15_000;

interface Agent {
  connection: AgentConnection;
  supervisor: TaskSupervisor;
  state: AgentState;
  logOutbox: LogOutbox;
}

/** Connection, supervisor and log shipper over one data dir, wired as `zectre-agent run` wires them. */
function startAgent(): Agent {
  const key: NodeKey = generateNodeKey();
  plane.register("web-1", key.publicKey, "active");
  const dir = join(tempDir(), "agent");
  ensurePrivateDir(dir);
  const paths = dataDirPaths(dir);
  const state = openAgentState(paths);
  const logOutbox = LogOutbox.open(paths.logOutbox);
  const logger = new Logger({ sink: () => {} });
  const connection = new AgentConnection({
    identity: { url: plane.url, org: plane.org, nodeId: "web-1" },
    signer: ed25519Signer(key.privateKey),
    settings: state.settings,
    outbox: state.outbox,
    logOutbox,
    appliedActions: state.appliedActions,
    facts: () => FIXED_FACTS,
    logger,
    backoff: { baseMs: 5, capMs: 20 },
  });
  const shipper = new LogShipper({ outbox: logOutbox, send: (message) => connection.send(message), logger, flushMs: 50 });
  const supervisor = new TaskSupervisor({
    dataDir: dir,
    artifacts: new FixtureArtifacts(),
    logger,
    enqueue: (message) => connection.enqueue(message),
    output: (line) => shipper.push(line),
    timings: FAST_TIMINGS,
  });
  supervisor.attach(connection);
  void supervisor.recover();
  void connection.run();
  cleanups.push(async () => {
    await supervisor.shutdown();
    shipper.stop();
    await connection.stop();
    state.close();
  });
  return { connection, supervisor, state, logOutbox };
}

const statusesIn = (session: AgentSession) => plane.messages(session, "task.status").map((m) => TaskStatusMessage.parse(m));
const logsIn = (session: AgentSession) => plane.messages(session, "task.logs").map((m) => TaskLogsMessage.parse(m));
const inventoriesIn = (session: AgentSession) => plane.messages(session, "task.inventory").map((m) => TaskInventoryMessage.parse(m));
const acksOf = (session: AgentSession, id: string) => plane.ackCount(session, id);
const indexOf = (session: AgentSession, predicate: (message: Record<string, unknown>) => boolean) =>
  session.received.findIndex((m) => typeof m === "object" && m !== null && predicate(m as Record<string, unknown>));

/** Ends the current session from the server side, like a control plane restart, and waits for the next one. */
async function reconnect(): Promise<AgentSession> {
  const count = plane.sessions.length;
  plane.session().socket.terminate();
  return until(() => plane.sessions[count], "a new session", WAIT_MS);
}

describe("tasks over the agent connection", () => {
  it("task.start is acked, statuses carry the host port, output arrives as task.logs, and every welcome brings an inventory", async () => {
    const agent = startAgent();
    const first = await until(() => plane.sessions[0], "a session");
    // The inventory comes after the welcome's facts, even with nothing to list.
    const empty = await until(() => inventoriesIn(first)[0], "the first inventory");
    expect(empty).toEqual({ type: "task.inventory", v: 1, tasks: [] });
    expect(indexOf(first, (m) => m.type === "facts")).toBeLessThan(indexOf(first, (m) => m.type === "task.inventory"));

    const spec = helloSpec();
    plane.sendAction(first, "start-1", spec);
    await until(() => acksOf(first, "start-1") === 1, "the ack of the task.start");
    expect(existsSync(join(agent.supervisor.store.taskDir(spec.taskId), "task.json"))).toBe(true);
    const healthy = await until(() => statusesIn(first).find((s) => s.state === "healthy"), "a healthy status", WAIT_MS);
    expect(statusesIn(first).map((s) => s.state)).toEqual(["starting", "healthy"]);
    expect(healthy).toMatchObject({ taskId: spec.taskId, app: "hello", deploymentId: spec.deploymentId, restarts: 0 });
    const port = healthy.hostPort ?? 0;
    expect(statusesIn(first)[0]?.hostPort).toBe(port);
    expect(await getText(port, "/")).toEqual({ status: 200, text: `hello from ${spec.deploymentId}\n` });

    const lines = () => logsIn(first).flatMap((m) => m.lines);
    await until(() => lines().some((l) => l.line === "GET /"), "the GET / log line", WAIT_MS);
    expect(lines().find((l) => l.stream === "stderr")).toMatchObject({ taskId: spec.taskId, line: `hello-app listening on 127.0.0.1:${port}` });
    // The fake control plane acks what it gets: both outboxes drain.
    await until(() => agent.state.outbox.size === 0 && agent.logOutbox.size === 0, "both outboxes empty", WAIT_MS);

    const second = await reconnect();
    const inventory = await until(() => inventoriesIn(second)[0], "the inventory after the reconnect", WAIT_MS);
    expect(inventory.tasks).toEqual([{ taskId: spec.taskId, app: "hello", deploymentId: spec.deploymentId, state: "healthy", hostPort: port }]);
  });

  it("acks are honoured: unacked statuses and log batches are resent after a reconnect, before the inventory, until acked", async () => {
    plane.autoAck = false;
    const agent = startAgent();
    const first = await until(() => plane.sessions[0], "a session");
    const spec = helloSpec();
    plane.sendAction(first, "start-1", spec);
    await until(() => statusesIn(first).some((s) => s.state === "healthy"), "a healthy status", WAIT_MS);
    await until(() => logsIn(first).length > 0, "a log batch", WAIT_MS);
    const statusIds = statusesIn(first).map((s) => s.id);
    const logIds = logsIn(first).map((m) => m.id);
    expect(agent.state.outbox.pending().map((m) => m.id)).toEqual(statusIds);
    expect(logIds.every((id) => agent.logOutbox.has(id))).toBe(true);

    const second = await reconnect();
    await until(() => inventoriesIn(second).length === 1, "the inventory", WAIT_MS);
    const resentStatuses = statusesIn(second).map((s) => s.id);
    expect(resentStatuses.slice(0, statusIds.length)).toEqual(statusIds);
    expect(logIds.every((id) => logsIn(second).some((m) => m.id === id))).toBe(true);
    const inventoryAt = indexOf(second, (m) => m.type === "task.inventory");
    expect(indexOf(second, (m) => m.id === statusIds.at(-1))).toBeLessThan(inventoryAt);
    expect(indexOf(second, (m) => m.id === logIds.at(-1))).toBeLessThan(inventoryAt);

    plane.ack(second, [...statusIds, ...logIds]);
    await until(() => statusIds.every((id) => !agent.state.outbox.has(id)) && logIds.every((id) => !agent.logOutbox.has(id)), "the acked ids gone", WAIT_MS);
  });

  it("keeps the task running while the control plane is unreachable; what happened offline arrives after the reconnect", async () => {
    const agent = startAgent();
    const first = await until(() => plane.sessions[0], "a session");
    const spec = helloSpec();
    plane.sendAction(first, "start-1", spec);
    const healthy = await until(() => statusesIn(first).find((s) => s.state === "healthy"), "a healthy status", WAIT_MS);
    const port = healthy.hostPort ?? 0;

    // The control plane turns the node away (challenges fail) and drops the socket: the agent is offline.
    const node = plane.nodes.get("web-1");
    if (!node) throw new Error("node not registered");
    node.state = "pending";
    plane.session().socket.terminate();
    await first.closed;

    expect((await getText(port, "/crash")).text).toBe("crashing\n");
    const sessionsBefore = plane.sessions.length;
    // Restarted and healthy again with no control plane in sight.
    await until(() => agent.supervisor.get(spec.taskId)?.state === "healthy" && agent.supervisor.get(spec.taskId)?.restarts === 1, "healthy again", WAIT_MS);
    expect(await getText(port, "/")).toMatchObject({ status: 200 });
    expect(plane.sessions.length).toBe(sessionsBefore);

    node.state = "active";
    const second = await until(() => plane.sessions[sessionsBefore], "a session after coming back", WAIT_MS);
    await until(() => statusesIn(second).some((s) => s.state === "healthy" && s.restarts === 1), "the offline statuses", WAIT_MS);
    expect(statusesIn(second).map((s) => `${s.state}/${s.restarts}`)).toEqual(["crashed/0", "starting/1", "healthy/1"]);
    expect(statusesIn(second)[0]).toMatchObject({ exitCode: 1, hostPort: port });
    await until(() => logsIn(second).flatMap((m) => m.lines).some((l) => l.line === "GET /crash"), "the offline output", WAIT_MS);
    const inventory = await until(() => inventoriesIn(second)[0], "the inventory", WAIT_MS);
    expect(inventory.tasks).toEqual([expect.objectContaining({ taskId: spec.taskId, state: "healthy", hostPort: port })]);
  });

  it("task.stop: stopping, then stopped; the task dir is gone and so is the task from the next inventory", async () => {
    const agent = startAgent();
    const first = await until(() => plane.sessions[0], "a session");
    const spec = helloSpec();
    plane.sendAction(first, "start-1", spec);
    await until(() => statusesIn(first).some((s) => s.state === "healthy"), "a healthy status", WAIT_MS);

    plane.sendAction(first, "stop-1", { kind: "task.stop", taskId: spec.taskId, graceSeconds: 5 });
    await until(() => acksOf(first, "stop-1") === 1, "the ack of the task.stop");
    await until(() => statusesIn(first).some((s) => s.state === "stopped"), "a stopped status", WAIT_MS);
    expect(statusesIn(first).map((s) => s.state)).toEqual(["starting", "healthy", "stopping", "stopped"]);
    expect(existsSync(agent.supervisor.store.taskDir(spec.taskId))).toBe(false);
    // A stop for a task the agent does not have is acked (nothing to do), not resent forever.
    plane.sendAction(first, "stop-2", { kind: "task.stop", taskId: helloSpec().taskId, graceSeconds: 5 });
    await until(() => acksOf(first, "stop-2") === 1, "the ack of the second task.stop");

    const second = await reconnect();
    expect((await until(() => inventoriesIn(second)[0], "the inventory", WAIT_MS)).tasks).toEqual([]);
  });
});

describe("zectre-agent run with tasks", () => {
  it("brings back a task from its data dir at start, reports it, and ends its process on SIGTERM but keeps task.json", async () => {
    const key = generateNodeKey();
    plane.register("web-1", key.publicKey, "active");
    const dir = join(tempDir(), "agent");
    ensurePrivateDir(dir);
    const paths = dataDirPaths(dir);
    writePrivateKey(paths.key, key.privateKey);
    writeIdentity(paths, { v: 1, url: plane.url, org: plane.org, nodeId: "web-1", publicKey: key.publicKey, enrolledAt: new Date().toISOString(), state: "approved" });
    // A task the agent was running before it was restarted, its artifact already unpacked;
    // meanwhile something else took its port.
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const taken = (squatter.address() as AddressInfo).port;
    const spec = helloSpec();
    const store = new TaskStore(dir);
    store.write(newTaskFile(spec, taken));
    cpSync(HELLO_APP, store.appDir(spec.taskId), { recursive: true });

    const agent = startAgentProcess(["run", "--data-dir", dir], {
      ZECTRE_AGENT_BACKOFF_BASE_MS: "5",
      ZECTRE_AGENT_BACKOFF_CAP_MS: "50",
      ZECTRE_AGENT_TASK_HEALTH_MS: "50",
    });
    const session = await until(() => plane.sessions[0], "a session", WAIT_MS);
    const healthy = await until(() => statusesIn(session).find((s) => s.state === "healthy"), "a healthy status", WAIT_MS);
    // The old port is taken, so the task moved to a new one and said so.
    expect(statusesIn(session)[0]).toMatchObject({ state: "starting", hostPort: taken });
    const port = healthy.hostPort ?? 0;
    expect(port).not.toBe(taken);
    expect(await getText(port, "/")).toMatchObject({ status: 200 });
    await until(() => logsIn(session).length > 0, "task output", WAIT_MS);
    await agent.waitForLog("task healthy", WAIT_MS);

    agent.child.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
    await expect(getText(port, "/")).rejects.toThrow();
    expect(JSON.parse(readFileSync(join(store.taskDir(spec.taskId), "task.json"), "utf8"))).toMatchObject({ desired: "run", hostPort: port });
    expect(agent.logs().some((line) => line.msg === "task process ended for the agent's shutdown" && line.taskId === spec.taskId)).toBe(true);
  });
});
