import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";

interface JobRecord {
  status: string;
  targets: { nodeId: string; state: string; return: { success: boolean; error: string | null; result: unknown } | null }[];
}

/** expect.poll only works inside a test; setup waits with this. */
async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Real agents running real commands, driven by the real CLI. */
describe("jobs end to end", () => {
  let plane: LocalControlPlane;
  const agents = new Map<string, { dir: string; process: RunningAgent }>();
  const cli = (...args: string[]) => runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config") } });
  const job = async (jid: string): Promise<JobRecord> => {
    const res = await cli("job", "show", jid, "--format", "json");
    return (JSON.parse(res.stdout) as { job: JobRecord }).job;
  };
  const online = async (id: string) => {
    const res = await cli("node", "list", "--format", "json");
    return (JSON.parse(res.stdout) as { nodes: { id: string; online: boolean }[] }).nodes.find((n) => n.id === id)?.online ?? false;
  };

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1 });
    const created = await cli("node", "token", "create", "--uses", "2", "--auto-approve", "--format", "json");
    const token = (JSON.parse(created.stdout) as { token: string }).token;
    for (const id of ["job-a", "job-b"]) {
      const dir = mkdtempSync(join(tmpdir(), `zectre-${id}-`));
      const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", id, "--data-dir", dir]);
      if (enrolled.code !== 0) throw new Error(enrolled.stderr);
      agents.set(id, { dir, process: startAgent(dir) });
    }
    for (const id of agents.keys()) await waitFor(() => online(id), 30_000);
  });

  afterAll(async () => {
    for (const agent of agents.values()) await agent.process.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("pings every matching node and exits 0", async () => {
    const res = await cli("run", "job-*", "test.ping");
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/job-a:\n\s+true/);
    expect(res.stdout).toMatch(/job-b:\n\s+true/);
    expect(res.stderr).toContain("2 succeeded");
  });

  it("runs a real command and reports its output and failure (exit 2)", async () => {
    const res = await cli("job-a", "cmd.run", "echo hello-from-$(hostname >/dev/null && echo agent); echo oops >&2; exit 3");
    expect(res.code).toBe(2);
    expect(res.stdout).toContain("hello-from-agent");
    expect(res.stdout).toContain("oops");
    const list = await cli("job", "list");
    expect(list.stdout).toMatch(/^JID\s+FUNCTION\s+TARGET\s+STATE\s+USER/);
    expect(list.stdout).toContain("cmd.run");
  });

  it("pushes a state tree and applies it on a node; the second apply changes nothing", async () => {
    const tree = mkdtempSync(join(tmpdir(), "zectre-states-"));
    const target = join(tree, "out.txt");
    writeFileSync(join(tree, "top.yaml"), '"job-a":\n  - demo\n');
    writeFileSync(join(tree, "demo.yaml"), `demo_file:\n  file.managed:\n    - name: ${target}\n    - contents: "applied\\n"\n    - mode: "0640"\n`);
    const pushed = await cli("state", "push", tree);
    expect(pushed.code).toBe(0);
    expect(pushed.stdout).toMatch(/^Pushed state tree [0-9a-f]{16} \(2 files/);
    const changedFlags = async () => {
      const res = await cli("run", "job-a", "state.apply", "--format", "json");
      expect(res.code).toBe(0);
      const record = JSON.parse(res.stdout) as { job: { targets: { return: { result: { results: { changed: boolean }[] } } }[] } };
      return record.job.targets[0]?.return.result.results.map((r) => r.changed);
    };
    // The tree reaches the agent through its outbox; retry until the agent has it.
    await expect.poll(async () => (await cli("run", "job-a", "state.apply")).code, { timeout: 15_000, interval: 500 }).toBe(0);
    expect(readFileSync(target, "utf8")).toBe("applied\n");
    expect(await changedFlags()).toEqual([false]);
  });

  it("cancels a running cmd.run 'sleep 60'", async () => {
    const started = await cli("run", "job-a", "cmd.run", "sleep 60", "--async");
    expect(started.code).toBe(0);
    const jid = started.stdout.trim();
    expect(jid).toMatch(/^\d{23}$/);
    await expect.poll(async () => (await job(jid)).targets[0]?.state, { timeout: 15_000 }).toBe("acked");
    const kill = await cli("job", "kill", jid);
    expect(kill.stdout.trim()).toBe(`Cancel signal sent for job ${jid}`);
    await expect.poll(async () => (await job(jid)).targets[0]?.return?.error, { timeout: 15_000 }).toBe("execution canceled");
    expect((await job(jid)).status).toBe("canceled");
  });

  it("finishes as partial when a node goes offline mid-job (exit 3 from watch)", async () => {
    const started = await cli("run", "job-*", "test.sleep", "3", "--timeout", "12", "--async");
    const jid = started.stdout.trim();
    await expect.poll(async () => (await job(jid)).targets.every((t) => t.state === "acked"), { timeout: 15_000 }).toBe(true);
    const b = agents.get("job-b");
    b?.process.child.kill("SIGKILL");
    await b?.process.exited;
    const watched = await cli("job", "watch", jid);
    expect(watched.code).toBe(3);
    const record = await job(jid);
    expect(record.status).toBe("partial");
    expect(record.targets.find((t) => t.nodeId === "job-a")?.return?.success).toBe(true);
    expect(record.targets.find((t) => t.nodeId === "job-b")?.return).toBeNull();
  });

  it("runs schedules from settings on the agent, also while the control plane is down, and reports them as jobs", async () => {
    const schedules = { ping: { function: "test.ping", interval: 1, run_on_start: true, return_job: true } };
    expect((await cli("settings", "set", "schedules", JSON.stringify(schedules), "--node", "job-a")).code).toBe(0);
    const scheduled = async () => {
      const res = await cli("job", "list", "--limit", "500", "--format", "json");
      return (JSON.parse(res.stdout) as { jobs: { jid: string; user: string; function: string }[] }).jobs.filter(
        (j) => j.user === "node:job-a" && j.function === "test.ping",
      );
    };
    await expect.poll(async () => (await scheduled()).length, { timeout: 20_000, interval: 500 }).toBeGreaterThan(0);
    const first = (await scheduled())[0] as { jid: string };
    const record = (await cli("job", "show", first.jid, "--format", "json")).stdout;
    expect(JSON.parse(record)).toMatchObject({ job: { metadata: { schedule: "ping", source: "schedule" }, status: "complete" } });

    // Runs made while the control plane is away arrive when it is back.
    await plane.stop();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const upAt = Date.now();
    await plane.restart();
    await expect
      .poll(async () => (await scheduled()).filter((j) => jidTime(j.jid) > downAt && jidTime(j.jid) < upAt).length, { timeout: 30_000, interval: 1000 })
      .toBeGreaterThan(0);
    expect((await cli("settings", "unset", "schedules", "--node", "job-a")).code).toBe(0);
  });
});

/** A jid starts with its UTC time: YYYYMMDDhhmmssSSS. */
function jidTime(jid: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{3})/.exec(jid);
  if (!m) return 0;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), Number(m[7]));
}
