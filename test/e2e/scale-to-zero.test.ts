import { cpSync, mkdtempSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * Scale to zero end to end: the real control plane with its scheduler and proxy (wrangler dev), a real
 * agent running the real fixture app, the real CLI. A deployment with `--min 0 --idle-timeout 2s` serves,
 * stops its task after two quiet seconds (the process is gone), and the next requests wake it: each is
 * held until the new task is healthy, then served. With no node online a wake cannot succeed, and the
 * held request gets a 503 with Retry-After once the proxy's wake timeout (10 s here) passes.
 */

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODE = "stz-a";
const WAKE_TIMEOUT_SECONDS = 10;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to the proxy on 127.0.0.1 with `host` as the Host header (Node does not resolve *.localhost). */
function send(port: number, host: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      const pieces: Buffer[] = [];
      res.on("data", (chunk: Buffer) => pieces.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(pieces).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}


/** Whether a process with this id exists (signal 0 checks without signalling). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

describe("scale to zero end to end", () => {
  let fleet: Fleet;
  let deployment: DeploymentRecord;
  let host: string;
  let port: number;
  const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });
  const read = async () => (await fleet.api("GET", `/api/v1/deployments/${deployment.id}`)).body.deployment as DeploymentRecord;
  const scaledToZero = (d: DeploymentRecord) => d.status === "idle" && d.tasks.length > 0 && d.tasks.every((t) => t.state === "stopped");
  const online = async () => ((await fleet.api("GET", `/api/v1/nodes/${NODE}`)).body.node as { online?: boolean } | undefined)?.online;

  beforeAll(async () => {
    process.env.WAKE_TIMEOUT_SECONDS = String(WAKE_TIMEOUT_SECONDS);
    fleet = await startFleet([NODE], { heartbeatSeconds: 1 });
    delete process.env.WAKE_TIMEOUT_SECONDS;
    port = fleet.plane.proxyPort;
    await eventually(online, (o) => o === true, `${NODE} online`);
    const dir = join(mkdtempSync(join(tmpdir(), "zectre-stz-")), "sleepy");
    cpSync(FIXTURE, dir, { recursive: true });
    const res = await cli("deploy", dir, "--app", "sleepy", "--command", "node server.mjs", "--health-path", "/healthz", "--min", "0", "--idle-timeout", "2s", "--format", "json");
    if (res.code !== 0) throw new Error(res.stderr);
    deployment = (JSON.parse(res.stdout) as { deployment: DeploymentRecord }).deployment;
    host = `${deployment.id}.sleepy.default.localhost:${port}`;
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it("serves, stops its task after the idle timeout, and the next requests wake it, all held and served by the new task", async () => {
    expect(deployment.spec).toMatchObject({ minReplicas: 0, idleTimeoutSeconds: 2 });
    const before = await send(port, host, "/pid");
    expect(before.status).toBe(200);
    const oldPid = Number(before.body);
    expect(processExists(oldPid)).toBe(true);

    // Two seconds without a request: the task is stopped through the agent, and its process is gone.
    const idle = await eventually(read, scaledToZero, "the deployment scaled to zero");
    expect(idle.idleSince).not.toBeNull();
    await eventually(async () => processExists(oldPid), (exists) => !exists, `process ${oldPid} gone`);
    const listed = await cli("deployments", "sleepy");
    expect(listed.stdout).toMatch(new RegExp(`${deployment.id}\\s+sleepy\\s+idle\\s+0/1 \\(min 0 after 2s idle\\)`));

    // Two requests at once: both are held while the deployment wakes, and both are served by the one new task.
    const [a, b] = await Promise.all([send(port, host, "/pid"), send(port, host, "/pid")]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const newPid = Number(a.body);
    expect(Number(b.body)).toBe(newPid);
    expect(newPid).not.toBe(oldPid);
    expect(processExists(newPid)).toBe(true);
    const woken = await read();
    expect(woken.idleSince).toBeNull();
    expect(woken.tasks.filter((t) => t.desired === "run" && t.state === "healthy")).toHaveLength(1);
  });

  it("answers 503 with Retry-After once the wake timeout passes when the wake cannot succeed (no node online)", async () => {
    await eventually(read, (d) => d.status === "idle" && d.tasks.every((t) => t.state === "stopped"), "idle again");
    await fleet.agents[0]?.stop();
    await eventually(online, (o) => o === false, `${NODE} offline`);
    const started = Date.now();
    const res = await send(port, host, "/");
    const heldMs = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers["retry-after"]).toBe("5");
    expect(res.body.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(res.body).error).toEqual({ code: "unavailable", message: `deployment ${deployment.id} is waking up; try again shortly` });
    // Held for the wake, not refused at once (and not forever).
    expect(heldMs).toBeGreaterThanOrEqual((WAKE_TIMEOUT_SECONDS - 1) * 1000);
    expect(heldMs).toBeLessThan((WAKE_TIMEOUT_SECONDS + 20) * 1000);
    // The wake asked for a replica; with no node it waits to be placed.
    expect((await read()).status).toBe("pending");
  });
});
