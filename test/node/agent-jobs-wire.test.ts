import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentConnection } from "../../agent/src/connection.ts";
import { JobRunner } from "../../agent/src/jobs/runner.ts";
import { ed25519Signer, generateNodeKey, type NodeKey } from "../../agent/src/keys.ts";
import { Logger } from "../../agent/src/log.ts";
import { type AgentState, openAgentState } from "../../agent/src/state/agent-state.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import { writeIdentity, writePrivateKey } from "../../agent/src/state/identity.ts";
import { ReturnMessage } from "../../protocol/jobs.ts";
import { acksIn, type AgentSession, until, useFakeControlPlane } from "./helpers/agent-control-plane.ts";
import { dispatchOf, FIXED_FACTS, testJid } from "./helpers/agent-jobs.ts";
import { runAgentCommand, startAgent as startAgentProcess, useAgentProcesses } from "./helpers/agent-run.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** Jobs over the agent's real connection: dispatch and cancel actions in, returns out through the outbox. */

const tempDir = useTempDirs();
useAgentProcesses();
const { plane, cleanups } = useFakeControlPlane();

interface Agent {
  connection: AgentConnection;
  runner: JobRunner;
  state: AgentState;
  welcomes: number;
  /** Stops the runner and the connection and closes the state, like a process exit. */
  shutdown(): Promise<void>;
}

/** An agent in-process (connection + runner over one data dir), as `zectre-agent run` wires it. */
function startAgent(dir: string, key: NodeKey, options: { ackHoldMs?: number } = {}): Agent {
  const state = openAgentState(dataDirPaths(dir));
  const logger = new Logger({ sink: () => {} });
  const connection = new AgentConnection({
    identity: { url: plane.url, org: plane.org, nodeId: "web-1" },
    signer: ed25519Signer(key.privateKey),
    settings: state.settings,
    outbox: state.outbox,
    appliedActions: state.appliedActions,
    facts: () => FIXED_FACTS,
    logger,
    backoff: { baseMs: 5, capMs: 20 },
    ...options,
  });
  const runner = new JobRunner({
    ledger: state.ledger,
    enqueue: (message) => connection.enqueue(message),
    logger,
    facts: () => FIXED_FACTS,
    settings: () => state.settings.currentSettings(),
  });
  runner.attach(connection);
  let closed = false;
  const agent: Agent = {
    connection,
    runner,
    state,
    welcomes: 0,
    shutdown: async () => {
      if (closed) return;
      closed = true;
      await runner.stop();
      await connection.stop();
      state.close();
    },
  };
  connection.on("welcome", () => agent.welcomes++);
  void connection.run();
  cleanups.push(() => agent.shutdown());
  return agent;
}

function agentDir(): { dir: string; key: NodeKey } {
  const key = generateNodeKey();
  plane.register("web-1", key.publicKey, "active");
  const dir = join(tempDir(), "agent");
  ensurePrivateDir(dir);
  return { dir, key };
}

const acksOf = (session: AgentSession, id: string) => plane.ackCount(session, id);
const returnsIn = (session: AgentSession) => plane.messages(session, "return");
/** Where the ack of `id` first arrived: an `ack` message, or a return carrying it. */
const ackPosition = (session: AgentSession, id: string) => session.received.findIndex((message) => acksIn(message).includes(id));

describe("jobs over the agent connection", () => {
  it("acks a dispatch on accept, sends the return through the outbox, and runs a repeat only for a higher epoch", async () => {
    const { dir, key } = agentDir();
    const agent = startAgent(dir, key);
    await until(() => agent.welcomes === 1, "the welcome");
    const session = plane.session();
    const counter = join(tempDir(), "count");
    const dispatch = dispatchOf("cmd.run", { cmd: `echo run >> ${counter}; echo done` });

    plane.sendAction(session, "a1", dispatch);
    const sent = await until(() => returnsIn(session)[0], "the return");
    expect(acksOf(session, "a1")).toBe(1);
    // Acked once, no later than the return: on its own, or riding on the return.
    expect(ackPosition(session, "a1")).toBeGreaterThanOrEqual(0);
    expect(ackPosition(session, "a1")).toBeLessThanOrEqual(session.received.indexOf(sent));
    const parsed = ReturnMessage.parse(sent);
    expect(parsed).toMatchObject({ type: "return", v: 1, id: `return.${dispatch.jid}.1`, jid: dispatch.jid, epoch: 1 });
    expect(parsed.return).toMatchObject({ success: true, retcode: 0, result: { stdout: "done\n", stderr: "", retcode: 0 }, error: null });
    // Identity comes from the socket: the return names no node.
    expect("nodeId" in (sent as object)).toBe(false);
    // The fake control plane acked it: it left the outbox.
    await until(() => agent.state.outbox.size === 0, "the outbox to drain");

    // The same action again (a resend), and the same job under a new action id: acked, not run.
    plane.sendAction(session, "a1", dispatch);
    plane.sendAction(session, "a2", dispatch);
    await until(() => acksOf(session, "a1") === 2 && acksOf(session, "a2") === 1, "acks of the repeats");
    // A higher epoch is a deliberate re-dispatch: it runs.
    plane.sendAction(session, "a3", { ...dispatch, epoch: 2 });
    await until(() => returnsIn(session).length === 2, "the epoch-2 return");
    expect(returnsIn(session).map((m) => [m.jid, m.epoch])).toEqual([
      [dispatch.jid, 1],
      [dispatch.jid, 2],
    ]);
    expect(readFileSync(counter, "utf8")).toBe("run\nrun\n");
  });

  it("lets a fast job's return carry its dispatch's ack (one frame), and acks a slow one on its own first", async () => {
    const { dir, key } = agentDir();
    // A hold far longer than test.ping takes, so the ping's return is sure to leave inside it.
    const patient = startAgent(dir, key, { ackHoldMs: 5_000 });
    await until(() => patient.welcomes === 1, "the welcome");
    const session = plane.session();
    const ping = dispatchOf("test.ping");
    plane.sendAction(session, "p1", ping);
    const pingReturn = await until(() => returnsIn(session)[0], "the ping's return");
    expect(ReturnMessage.parse(pingReturn).acks).toEqual(["p1"]);
    expect(plane.messages(session, "ack").filter((m) => (m.ids as string[]).includes("p1"))).toEqual([]);
    await patient.shutdown();

    const quick = startAgent(dir, key, { ackHoldMs: 20 });
    await until(() => quick.welcomes === 1, "the second welcome");
    const again = plane.session();
    const nap = dispatchOf("test.sleep", { seconds: 0.5 });
    plane.sendAction(again, "s1", nap);
    const napReturn = await until(() => returnsIn(again)[0], "the sleep's return");
    expect(ackPosition(again, "s1")).toBeLessThan(again.received.indexOf(napReturn));
    expect(plane.messages(again, "ack").some((m) => (m.ids as string[]).includes("s1"))).toBe(true);
    expect("acks" in (napReturn as object)).toBe(false);
  });

  it("cancels a running job by action, and acks a cancel for a job it does not know", async () => {
    const { dir, key } = agentDir();
    const agent = startAgent(dir, key);
    await until(() => agent.welcomes === 1, "the welcome");
    const session = plane.session();
    const dispatch = dispatchOf("test.sleep", { seconds: 30 });
    plane.sendAction(session, "d1", dispatch);
    await until(() => agent.runner.active.includes(dispatch.jid), "the job to run");
    plane.sendAction(session, "c1", { kind: "job.cancel", jid: dispatch.jid });
    plane.sendAction(session, "c2", { kind: "job.cancel", jid: testJid() });
    const sent = ReturnMessage.parse(await until(() => returnsIn(session)[0], "the return"));
    expect(sent.return).toMatchObject({ success: false, retcode: null, result: null, error: "execution canceled" });
    await until(() => acksOf(session, "c1") === 1 && acksOf(session, "c2") === 1, "acks of both cancels");
    expect(returnsIn(session)).toHaveLength(1);
  });

  it("keeps returns produced while offline across a restart and sends them after reconnecting, until acked", async () => {
    plane.autoAck = false;
    const { dir, key } = agentDir();
    const first = startAgent(dir, key);
    await until(() => first.welcomes === 1, "the welcome");
    const session = plane.session();

    // Returned while connected, but never acked by the server.
    const ping = dispatchOf("test.ping");
    plane.sendAction(session, "p1", ping);
    await until(() => returnsIn(session).length === 1, "the ping's return");
    // Still running when the agent loses its connection; it finishes offline.
    const nap = dispatchOf("test.sleep", { seconds: 0.2 });
    plane.sendAction(session, "n1", nap);
    await until(() => first.runner.active.includes(nap.jid), "the sleep to run");
    await first.connection.stop();
    await first.runner.idle();
    expect(first.connection.connected).toBe(false);
    expect(first.state.outbox.pending().map((m) => m.id)).toEqual([`return.${ping.jid}.1`, `return.${nap.jid}.1`]);
    expect(returnsIn(session)).toHaveLength(1);

    // The agent restarts from its data dir.
    await first.shutdown();
    expect(readdirSync(join(dir, "outbox"))).toHaveLength(2);
    const second = startAgent(dir, key);
    expect(second.state.outbox.size).toBe(2);
    await until(() => second.welcomes === 1, "the welcome after the restart");
    const again = plane.session();
    expect(again).not.toBe(session);
    await until(() => returnsIn(again).length === 2, "both returns resent");
    expect(returnsIn(again).map((m) => m.jid)).toEqual([ping.jid, nap.jid]);
    expect(ReturnMessage.parse(returnsIn(again)[1]).return).toMatchObject({ success: true, result: true });

    // Acked once the control plane stored them: then the outbox is empty, on disk too.
    plane.ack(again, [`return.${ping.jid}.1`, `return.${nap.jid}.1`]);
    await until(() => second.state.outbox.size === 0, "the outbox to drain");
    expect(readdirSync(join(dir, "outbox"))).toEqual([]);

    // The restarted agent remembers what it ran: a resend of the dispatch does not run it again.
    plane.sendAction(again, "n2", nap);
    await until(() => acksOf(again, "n2") === 1, "the ack of the resend");
    await second.runner.idle();
    expect(returnsIn(again)).toHaveLength(2);
  });
});

describe("zectre-agent run", () => {
  it("executes jobs, logs them, and on SIGTERM stops a running job with a return", async () => {
    const { dir, key } = agentDir();
    const paths = dataDirPaths(dir);
    writePrivateKey(paths.key, key.privateKey);
    writeIdentity(paths, { v: 1, url: plane.url, org: plane.org, nodeId: "web-1", publicKey: key.publicKey, enrolledAt: new Date().toISOString(), state: "approved" });
    const agent = startAgentProcess(["run", "--data-dir", dir], { ZECTRE_AGENT_BACKOFF_BASE_MS: "5", ZECTRE_AGENT_BACKOFF_CAP_MS: "50" });
    const session = await until(() => plane.sessions[0], "a session");

    const echo = dispatchOf("test.echo", { _: ["hello from the agent"] });
    plane.sendAction(session, "e1", echo);
    const echoed = ReturnMessage.parse(await until(() => returnsIn(session).find((m) => m.jid === echo.jid), "the echo's return"));
    expect(echoed.return).toMatchObject({ success: true, retcode: 0, result: "hello from the agent" });

    const nap = dispatchOf("test.sleep", { seconds: 30 });
    plane.sendAction(session, "s1", nap);
    await until(() => agent.logs().some((line) => line.msg === "job started" && line.jid === nap.jid), "the sleep to start");
    agent.child.kill("SIGTERM");
    const result = await agent.exited;
    expect(result.code).toBe(0);
    // Sent before the socket closed with 1000: by the close, the server has it.
    expect(await session.closed).toEqual({ code: 1000, reason: "agent stopping" });
    const stopped = ReturnMessage.parse(returnsIn(session).find((m) => m.jid === nap.jid));
    expect(stopped.return).toMatchObject({ success: false, retcode: null, error: "agent stopped" });

    const jobLines = agent.logs().filter((line) => line.jid === echo.jid);
    expect(jobLines.map((line) => line.msg)).toEqual(["job started", "job finished"]);
    expect(jobLines[1]).toMatchObject({ level: "info", nodeId: "web-1", function: "test.echo", success: true, durationMs: expect.any(Number) });
  });

  it("refuses a --job-queue that is not a whole number", async () => {
    const result = await runAgentCommand(["run", "--data-dir", tempDir(), "--job-queue", "lots"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("zectre-agent: error: invalid --job-queue 'lots': expected a whole number of jobs (0 or more)\n");
  });
});
