import { spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TaskStore } from "../../agent/src/tasks/task-store.ts";
import { TaskStatusMessage } from "../../protocol/deployments.ts";
import { until } from "./helpers/agent-control-plane.ts";
import { processAlive } from "./helpers/agent-jobs.ts";
import { getText, helloSpec, listeningAddresses, useSupervisors } from "./helpers/agent-tasks.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** The task supervisor with real processes: the hello-app fixture, started, probed, crashed, stopped and recovered. */

const tempDir = useTempDirs();
const makeSupervisor = useSupervisors();

const WAIT_MS = 15_000;

/** Waits until something answers /healthz on the port. */
async function answering(port: number): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const answer = await getText(port, "/healthz").catch(() => undefined);
    if (answer?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nothing answered on port ${port}`);
}

describe("TaskSupervisor", () => {
  it("writes task.json first, starts the app on a loopback port, and reports it healthy", async () => {
    const dir = tempDir();
    const h = makeSupervisor(dir);
    const spec = helloSpec();
    const started = await h.supervisor.start(spec);

    // Durable before the start returns (the action is acked on return).
    const file = JSON.parse(readFileSync(join(dir, "tasks", spec.taskId, "task.json"), "utf8")) as Record<string, unknown>;
    expect(file).toMatchObject({ v: 1, spec, desired: "run", hostPort: started.hostPort, restarts: 0 });
    const port = started.hostPort ?? 0;
    expect(port).toBeGreaterThan(0);

    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    expect(h.states(spec.taskId)).toEqual(["starting/0", "healthy/0"]);
    for (const status of h.statuses) TaskStatusMessage.parse(status);
    expect(h.statuses.at(-1)).toMatchObject({ type: "task.status", v: 1, taskId: spec.taskId, app: "hello", deploymentId: spec.deploymentId, hostPort: port });
    expect(new Set(h.statuses.map((s) => s.id)).size).toBe(h.statuses.length);

    expect(await getText(port, "/")).toEqual({ status: 200, text: `hello from ${spec.deploymentId}\n` });
    // Bound to 127.0.0.1 and nothing else.
    expect(listeningAddresses(port)).toEqual(["127.0.0.1"]);
    // Its output became log lines: one stderr line at start, one stdout line per request.
    await until(() => h.lines.some((l) => l.stream === "stdout" && l.line === "GET /"), "the GET / line");
    expect(h.lines.find((l) => l.stream === "stderr")).toMatchObject({ taskId: spec.taskId, app: "hello", line: `hello-app listening on 127.0.0.1:${port}` });
    expect(h.logs.some((l) => l.msg === "task healthy" && l.taskId === spec.taskId)).toBe(true);
  });

  it("a deployment's fixed port is the task's port and its $PORT", async () => {
    const dir = tempDir();
    const h = makeSupervisor(dir);
    const fixed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const port = (probe.address() as { port: number }).port;
        probe.close(() => resolve(port));
      });
    });
    const spec = helloSpec({ port: fixed });
    expect((await h.supervisor.start(spec)).hostPort).toBe(fixed);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    expect(JSON.parse((await getText(fixed, "/env")).text).PORT).toBe(String(fixed));
  });

  it("gives the process a minimal environment: PATH/HOME/LANG, the task's env and Zectre's variables, which win", async () => {
    const h = makeSupervisor(tempDir(), { env: { PATH: process.env.PATH, HOME: "/home/agent", AGENT_SECRET: "do-not-leak" } });
    const spec = helloSpec({ env: { GREETING: "the env", PORT: "1", ZECTRE_APP: "spoofed" } });
    const { hostPort } = await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const port = hostPort ?? 0;
    expect(await getText(port, "/")).toEqual({ status: 200, text: "hello from the env\n" });
    const env = JSON.parse((await getText(port, "/env")).text) as Record<string, string>;
    expect(env).toMatchObject({
      GREETING: "the env",
      HOME: "/home/agent",
      PORT: String(port),
      HOST: "127.0.0.1",
      ZECTRE_TASK_ID: spec.taskId,
      ZECTRE_APP: "hello",
      ZECTRE_DEPLOYMENT: spec.deploymentId,
    });
    expect(env.AGENT_SECRET).toBeUndefined();
  });

  it("a second start of a known task starts nothing and reports the current status again", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec();
    const first = await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const pid = h.supervisor.pidOf(spec.taskId);
    const before = h.statuses.length;

    const again = await h.supervisor.start(spec);
    expect(again).toMatchObject({ state: "healthy", hostPort: first.hostPort });
    expect(h.supervisor.pidOf(spec.taskId)).toBe(pid);
    expect(h.artifacts.unpacked).toBe(1);
    expect(h.statuses.slice(before).map((s) => s.state)).toEqual(["healthy"]);
  });

  it("a crash is reported with its exit code, restarted after the backoff on the same port, and counted", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec();
    const { hostPort } = await h.supervisor.start(spec);
    const port = hostPort ?? 0;
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const firstPid = h.supervisor.pidOf(spec.taskId);

    expect((await getText(port, "/crash")).text).toBe("crashing\n");
    await until(() => h.supervisor.get(spec.taskId)?.restarts === 1 && h.supervisor.get(spec.taskId)?.state === "healthy", "healthy again", WAIT_MS);

    expect(h.states(spec.taskId)).toEqual(["starting/0", "healthy/0", "crashed/0", "starting/1", "healthy/1"]);
    const crashed = h.statuses.find((s) => s.state === "crashed");
    expect(crashed).toMatchObject({ exitCode: 1, message: "exited with code 1", hostPort: port });
    expect(h.supervisor.get(spec.taskId)?.hostPort).toBe(port);
    expect(h.supervisor.pidOf(spec.taskId)).not.toBe(firstPid);
    expect(h.artifacts.unpacked).toBe(1);
    expect(JSON.parse(readFileSync(join(h.supervisor.store.taskDir(spec.taskId), "task.json"), "utf8"))).toMatchObject({ restarts: 1 });
    expect(await getText(port, "/")).toMatchObject({ status: 200 });
  });

  it("backs off 1×, 2×, 4× the base between restarts of a task that keeps crashing", async () => {
    const h = makeSupervisor(tempDir(), { timings: { restartBaseMs: 100, restartCapMs: 250 } });
    const spec = helloSpec({ command: "echo starting; exit 3" });
    await h.supervisor.start(spec);
    await until(() => (h.supervisor.get(spec.taskId)?.restarts ?? 0) >= 4, "four restarts", WAIT_MS);
    await h.supervisor.stop(spec.taskId, 0);
    const delays = h.logs.filter((l) => l.msg === "task restart scheduled").map((l) => l.delayMs);
    expect(delays.slice(0, 4)).toEqual([100, 200, 250, 250]);
    const crashed = h.statuses.filter((s) => s.state === "crashed");
    expect(crashed[0]).toMatchObject({ exitCode: 3, message: "exited with code 3", restarts: 0 });
    expect(crashed[1]).toMatchObject({ restarts: 1 });
  });

  it("turns unhealthy after three failed probes in a row, and healthy again on a pass", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec();
    const { hostPort } = await h.supervisor.start(spec);
    const port = hostPort ?? 0;
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    await getText(port, "/sicken");
    await until(() => h.supervisor.get(spec.taskId)?.state === "unhealthy", "unhealthy", WAIT_MS);
    expect(h.statuses.at(-1)).toMatchObject({ state: "unhealthy", message: "health check failed 3 times in a row (GET /healthz)" });
    // At least three probes failed before the change (each probe is one request line).
    expect(h.lines.filter((l) => l.line === "GET /healthz").length).toBeGreaterThanOrEqual(4);
    await getText(port, "/heal");
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy again", WAIT_MS);
    expect(h.states(spec.taskId)).toEqual(["starting/0", "healthy/0", "unhealthy/0", "healthy/0"]);
  });

  it("health-checks over TCP when the deployment says tcp", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec({ healthCheck: { type: "tcp" } });
    await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    // No HTTP probe reached the app.
    expect(h.lines.filter((l) => l.stream === "stdout")).toEqual([]);
  });

  it("an artifact that cannot be unpacked yet is a crash, retried until it works", async () => {
    const h = makeSupervisor(tempDir());
    h.artifacts.failures.push(new Error("download failed: control plane unreachable"));
    const spec = helloSpec();
    await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    expect(h.states(spec.taskId)).toEqual(["starting/0", "crashed/0", "starting/1", "healthy/1"]);
    expect(h.statuses[1]).toMatchObject({ message: "could not start: download failed: control plane unreachable", exitCode: null });
    expect(existsSync(join(h.supervisor.store.taskDir(spec.taskId), "app.partial"))).toBe(false);
  });

  it("stop: SIGTERM to the process group, stopped with the exit code, task dir removed", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec();
    const { hostPort } = await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const pid = h.supervisor.pidOf(spec.taskId) ?? 0;

    const done = h.supervisor.stop(spec.taskId, 10);
    // Recorded before the stop returned, so an ack cannot precede it.
    expect(JSON.parse(readFileSync(join(h.supervisor.store.taskDir(spec.taskId), "task.json"), "utf8"))).toMatchObject({ desired: "stop", graceSeconds: 10 });
    await done;
    expect(h.states(spec.taskId)).toEqual(["starting/0", "healthy/0", "stopping/0", "stopped/0"]);
    // 128 + SIGTERM: the default handler ended it, well within the grace.
    expect(h.statuses.at(-1)).toMatchObject({ state: "stopped", exitCode: 143, message: null, hostPort });
    expect(processAlive(pid)).toBe(false);
    expect(existsSync(h.supervisor.store.taskDir(spec.taskId))).toBe(false);
    expect(h.supervisor.list()).toEqual([]);
    // A late duplicate start does not bring it back.
    await h.supervisor.start(spec);
    expect(h.supervisor.pidOf(spec.taskId)).toBeUndefined();
    expect(h.statuses.at(-1)?.state).toBe("stopped");
  });

  it("stop: a process that ignores SIGTERM gets SIGKILL once the grace is over", async () => {
    const h = makeSupervisor(tempDir());
    const spec = helloSpec({ env: { IGNORE_SIGTERM: "1" } });
    await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const pid = h.supervisor.pidOf(spec.taskId) ?? 0;

    const begun = Date.now();
    await h.supervisor.stop(spec.taskId, 1);
    expect(Date.now() - begun).toBeGreaterThanOrEqual(950);
    // It saw the SIGTERM first.
    expect(h.lines.some((l) => l.line === "got SIGTERM, ignoring it")).toBe(true);
    expect(h.statuses.at(-1)).toMatchObject({ state: "stopped", message: "did not exit within 1s of SIGTERM; killed with SIGKILL" });
    expect(processAlive(pid)).toBe(false);
  });

  it("an agent restart brings back every task meant to run, on its old port, and finishes interrupted stops", async () => {
    const dir = tempDir();
    const first = makeSupervisor(dir);
    const keep = helloSpec();
    const { hostPort } = await first.supervisor.start(keep);
    await until(() => first.supervisor.get(keep.taskId)?.state === "healthy", "healthy", WAIT_MS);
    // A stop recorded but not carried out (the agent died right after writing it).
    const leaving = helloSpec();
    const store = new TaskStore(dir);
    store.write({ v: 1, spec: leaving, hostPort: 1, desired: "stop", restarts: 0, pid: null, graceSeconds: 5 });
    await first.supervisor.shutdown();
    await expect(getText(hostPort ?? 0, "/")).rejects.toThrow();

    const second = makeSupervisor(dir);
    await second.supervisor.recover();
    await until(() => second.supervisor.get(keep.taskId)?.state === "healthy", "healthy after the restart", WAIT_MS);
    expect(second.supervisor.get(keep.taskId)?.hostPort).toBe(hostPort);
    expect(second.states(keep.taskId)).toEqual(["starting/0", "healthy/0"]);
    // The artifact was already unpacked; it is not fetched again.
    expect(second.artifacts.unpacked).toBe(0);
    expect(second.states(leaving.taskId)).toEqual(["stopped/0"]);
    expect(existsSync(store.taskDir(leaving.taskId))).toBe(false);
    expect(await getText(hostPort ?? 0, "/")).toMatchObject({ status: 200 });
  });

  it("after an agent crash, ends the task process the old agent left running before starting it again", async () => {
    const dir = tempDir();
    const spec = helloSpec();
    const first = makeSupervisor(dir);
    const { hostPort } = await first.supervisor.start(spec);
    await until(() => first.supervisor.get(spec.taskId)?.state === "healthy", "healthy", WAIT_MS);
    const port = hostPort ?? 0;
    const store = new TaskStore(dir);
    const file = store.list().tasks[0]?.file;
    if (!file) throw new Error("no task.json");
    await first.supervisor.shutdown();

    // What a SIGKILLed agent leaves behind: the task's process, still running in its own group, holding the port.
    const orphan = spawn("/bin/sh", ["-c", "exec node server.mjs"], {
      cwd: store.appDir(spec.taskId),
      env: { PATH: process.env.PATH, PORT: String(port), HOST: "127.0.0.1", ZECTRE_TASK_ID: spec.taskId },
      detached: true,
      stdio: "ignore",
    });
    const orphanPid = orphan.pid ?? 0;
    orphan.unref();
    await answering(port);
    expect(processAlive(orphanPid)).toBe(true);
    store.write({ ...file, pid: orphanPid });

    const second = makeSupervisor(dir);
    await second.supervisor.recover();
    await until(() => second.supervisor.get(spec.taskId)?.state === "healthy", "healthy after the restart", WAIT_MS);
    expect(processAlive(orphanPid)).toBe(false);
    expect(second.supervisor.pidOf(spec.taskId)).not.toBe(orphanPid);
    expect(second.supervisor.get(spec.taskId)?.hostPort).toBe(port);
    expect(second.logs.some((l) => l.msg === "ending a task process left over from an earlier agent run" && l.pid === orphanPid)).toBe(true);
  });

  it("docker runtime without an engine: crashed with a clear message, and no restart loop", async () => {
    const dir = tempDir();
    const fakeDocker = join(dir, "docker");
    writeFileSync(fakeDocker, "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n");
    chmodSync(fakeDocker, 0o755);
    const h = makeSupervisor(join(dir, "data"), { dockerCommand: fakeDocker });
    const spec = helloSpec({ runtime: "docker" });
    await h.supervisor.start(spec);
    await until(() => h.supervisor.get(spec.taskId)?.state === "crashed", "crashed", WAIT_MS);
    expect(h.statuses.at(-1)?.message).toBe(
      "docker runtime requested but no Docker engine is reachable on this host (Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?)",
    );
    // Ten restart delays later it is still the one crash.
    await new Promise((resolve) => setTimeout(resolve, 10 * 50));
    expect(h.states(spec.taskId)).toEqual(["starting/0", "crashed/0"]);
    expect(h.artifacts.unpacked).toBe(0);

    const missing = makeSupervisor(join(dir, "data2"), { dockerCommand: join(dir, "no-such-docker") });
    const other = helloSpec({ runtime: "docker" });
    await missing.supervisor.start(other);
    await until(() => missing.supervisor.get(other.taskId)?.state === "crashed", "crashed", WAIT_MS);
    expect(missing.statuses.at(-1)?.message).toBe(
      `docker runtime requested but no Docker engine is reachable on this host (the '${join(dir, "no-such-docker")}' command is not installed)`,
    );
  });
});
