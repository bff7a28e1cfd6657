import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeploymentRecord, TaskRecord } from "../../protocol/deployments.ts";
import { startAgent } from "../helpers/agent-process.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODES = ["dep-a", "dep-b"];

interface DeployOutput {
  deployment: DeploymentRecord;
  previewUrl: string;
  layers: Array<{ layer: string; uploaded: boolean; reusedBy: string | null }>;
}


/** The fixture app plus a lockfile and an installed dependency, so the deploy has two layers. */
function appDirectory(): string {
  const dir = join(mkdtempSync(join(tmpdir(), "zectre-deploy-")), "hello");
  cpSync(FIXTURE, dir, { recursive: true });
  writeFileSync(join(dir, "package-lock.json"), JSON.stringify({ name: "hello-app", lockfileVersion: 3, packages: { "node_modules/tiny-dep": { version: "1.0.0" } } }));
  mkdirSync(join(dir, "node_modules/tiny-dep"), { recursive: true });
  writeFileSync(join(dir, "node_modules/tiny-dep/index.js"), "export const tiny = 1;\n");
  writeFileSync(join(dir, ".gitignore"), "node_modules/\n");
  return dir;
}

const running = (d: DeploymentRecord): TaskRecord[] => d.tasks.filter((t) => t.desired === "run");

/** A real control plane and scheduler, two real agents, the real CLI, and a real HTTP app from a fixture directory. */
describe("deployments end to end", () => {
  let fleet: Fleet;
  let dir: string;
  let first: DeploymentRecord;
  let second: DeploymentRecord;
  const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });
  const deployment = async (id: string) => (await fleet.api("GET", `/api/v1/deployments/${id}`)).body.deployment as DeploymentRecord;
  const app = async () => (await fleet.api("GET", "/api/v1/apps/hello")).body.app as { promoted: string | null };
  const healthy = (id: string, replicas = 1) =>
    eventually(() => deployment(id), (d) => running(d).filter((t) => t.state === "healthy").length === replicas, `${id} healthy`);
  const get = async (port: number, path = "/") => (await fetch(`http://127.0.0.1:${port}${path}`)).text();

  beforeAll(async () => {
    fleet = await startFleet(NODES, { heartbeatSeconds: 1, nodeLostGraceSeconds: 2 });
    for (const id of NODES) await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${id}`)).body, (b) => (b.node as { online?: boolean })?.online === true, `${id} online`);
    dir = appDirectory();
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it("deploys a directory: two layers uploaded, a healthy task that answers on its port, and the app promoted", async () => {
    const res = await cli("deploy", dir, "--app", "hello", "--health-path", "/healthz", "--format", "json");
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as DeployOutput;
    expect(out.layers.map((l) => [l.layer, l.uploaded])).toEqual([["app", true], ["deps", true]]);
    expect(out.previewUrl).toContain(`${out.deployment.id}.hello.default.localhost`);
    first = await healthy(out.deployment.id);
    const task = running(first)[0] as TaskRecord;
    expect(await get(task.hostPort as number)).toBe(`hello from ${first.id}\n`);
    await eventually(app, (a) => a.promoted === first.id, "the first deployment promoted");
  });

  it("redeploys changed code with unchanged dependencies: only the app layer uploads", async () => {
    writeFileSync(join(dir, "server.mjs"), `${"// v2\n"}${(await import("node:fs")).readFileSync(join(dir, "server.mjs"), "utf8")}`);
    const res = await cli("deploy", dir, "--app", "hello", "--health-path", "/healthz", "--format", "json");
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as DeployOutput;
    expect(out.layers.map((l) => [l.layer, l.uploaded])).toEqual([["app", true], ["deps", false]]);
    second = await healthy(out.deployment.id);
    // A preview: the app still serves the first.
    expect((await app()).promoted).toBe(first.id);
  });

  it("promotes, then rolls back without uploading; replaced tasks stop once the new ones are healthy", async () => {
    expect((await cli("promote", second.id)).code).toBe(0);
    await eventually(app, (a) => a.promoted === second.id, "the second promoted");
    await eventually(() => deployment(first.id), (d) => running(d).length === 0, "the first's tasks stopped");

    const rolled = await cli("rollback", "hello");
    expect(rolled.code, rolled.stderr).toBe(0);
    await eventually(app, (a) => a.promoted === first.id, "rolled back to the first");
    first = await healthy(first.id);
    await eventually(() => deployment(second.id), (d) => running(d).length === 0, "the second's tasks stopped");
  });

  it("restarts a task whose process was killed", async () => {
    const task = running(first)[0] as TaskRecord;
    process.kill(Number(await get(task.hostPort as number, "/pid")), "SIGKILL");
    const after = await eventually(
      () => deployment(first.id),
      (d) => running(d)[0]?.restarts === 1 && running(d)[0]?.state === "healthy",
      "a restart",
    );
    expect(running(after)[0]?.taskId).toBe(task.taskId);
  });

  it("moves the task to another node when its node goes offline past the grace", async () => {
    const task = running(first)[0] as TaskRecord;
    const index = NODES.indexOf(task.nodeId);
    const agent = fleet.agents[index];
    await agent?.stop();
    await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${task.nodeId}`)).body, (b) => (b.node as { online: boolean }).online === false, "node offline");
    await new Promise((r) => setTimeout(r, 2_500));
    // The cron's reconcile (wrangler dev runs it on request).
    await fetch(`${fleet.plane.apiUrl}/__scheduled?cron=*+*+*+*+*`);
    const moved = await eventually(
      () => deployment(first.id),
      (d) => running(d).some((t) => t.nodeId !== task.nodeId && t.state === "healthy"),
      "a healthy replacement on the other node",
    );
    expect(moved.tasks.find((t) => t.taskId === task.taskId)?.state).toBe("lost");
    // The node comes back: the task it still had is stopped, not run twice.
    if (agent) fleet.agents[index] = startAgent(agent.dataDir);
    await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${task.nodeId}`)).body, (b) => (b.node as { online: boolean }).online === true, "node back");
    const settled = await eventually(
      () => deployment(first.id),
      (d) => d.tasks.find((t) => t.taskId === task.taskId)?.state === "stopped",
      "the returning node's stale task stopped",
    );
    expect(running(settled)).toHaveLength(1);
  });

  it("scales to 2 across both nodes and back to 1", async () => {
    const up = await cli("scale", "hello", "2");
    expect(up.code, up.stderr).toBe(0);
    const two = await healthy(first.id, 2);
    expect(new Set(running(two).map((t) => t.nodeId)).size).toBe(2);
    expect((await cli("scale", "hello", "1")).code).toBe(0);
    await eventually(() => deployment(first.id), (d) => running(d).length === 1, "one task left");
  });

  it("keeps serving while the control plane is down, and nothing changes when it is back", async () => {
    const before = running(await deployment(first.id));
    const port = before[0]?.hostPort as number;
    await fleet.plane.crash();
    expect(await get(port)).toBe(`hello from ${first.id}\n`);
    await fleet.plane.restart();
    // Agents reconnect and report what they run: the same task, still healthy, nothing restarted or doubled.
    const after = await healthy(first.id);
    expect(running(after).map((t) => [t.taskId, t.restarts])).toEqual(before.map((t) => [t.taskId, t.restarts]));
    expect(await get(port)).toBe(`hello from ${first.id}\n`);
  });

  it("shows the app's logs", async () => {
    const res = await eventually(() => cli("logs", "hello", "--format", "json"), (r) => r.stdout.includes("GET /"), "a request line in the logs");
    const lines = res.stdout.trim().split("\n").map((l) => JSON.parse(l) as { line: string; nodeId: string });
    expect(lines.some((l) => l.line.includes("hello-app listening on 127.0.0.1:"))).toBe(true);
    expect(NODES).toContain(lines[0]?.nodeId);
  });
});
