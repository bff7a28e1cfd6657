import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";

interface NodeRow {
  id: string;
  state: string;
  online: boolean;
  lastSeen: string | null;
}

/** Real workerd, real agent processes, the real CLI. Heartbeats are 1 s so offline shows up quickly. */
describe("nodes end to end", () => {
  let plane: LocalControlPlane;
  let agentDir: string;
  let agent: RunningAgent | undefined;
  const cli = (...args: string[]) =>
    runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config") } });
  const nodes = async (state = "all"): Promise<NodeRow[]> => {
    const res = await cli("node", "list", "--state", state, "--format", "json");
    if (res.code !== 0) throw new Error(res.stderr);
    return (JSON.parse(res.stdout) as { nodes: NodeRow[] }).nodes;
  };
  const nodeOnline = async (id: string) => (await nodes()).find((n) => n.id === id)?.online ?? false;

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1 });
    agentDir = mkdtempSync(join(tmpdir(), "zectre-agent-"));
  });

  afterAll(async () => {
    await agent?.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("enrolls a real agent with a one-use token, pending until approved", async () => {
    const created = await cli("node", "token", "create", "--uses", "1", "--label", "env=e2e", "--format", "json");
    expect(created.code).toBe(0);
    const token = (JSON.parse(created.stdout) as { token: string }).token;
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", "e2e-1", "--data-dir", agentDir]);
    expect(enrolled.stderr).toBe("");
    expect(enrolled.code).toBe(0);
    expect(statMode(join(agentDir, "node.key"))).toBe(0o600);
    const pending = await cli("node", "enroll", "list", "-s", "pending");
    expect(pending.stdout).toContain("e2e-1");

    // The token is spent: a second host cannot use it.
    const second = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", "e2e-2", "--data-dir", mkdtempSync(join(tmpdir(), "zectre-agent-"))]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("no uses left");

    expect((await cli("node", "enroll", "approve", "e2e-1")).code).toBe(0);
  });

  it("connects, reports facts and goes online", async () => {
    agent = startAgent(agentDir);
    await expect.poll(() => nodeOnline("e2e-1"), { timeout: 30_000, interval: 500 }).toBe(true);
    const list = await cli("node", "list");
    expect(list.stdout).toMatch(/^NODE ID\s+OS\s+ARCH\s+ONLINE\s+LAST-SEEN/);
    expect(list.stdout).toMatch(/e2e-1\s+linux\s+\S+\s+yes\s+/);
    const os = await cli("node", "facts", "e2e-1", "os");
    expect(os.stdout.trim()).toBe("linux");
    const targeted = await cli("node", "list", "--target", "G@labels.env:e2e and e2e-*", "--format", "json");
    expect((JSON.parse(targeted.stdout) as { nodes: NodeRow[] }).nodes.map((n) => n.id)).toEqual(["e2e-1"]);
  });

  it("pushes settings to the agent, which keeps them on disk", async () => {
    expect((await cli("settings", "set", "log_level", "debug")).code).toBe(0);
    expect((await cli("settings", "set", "region", '"eu"', "--label", "env=e2e")).code).toBe(0);
    await expect
      .poll(() => readSnapshot(agentDir)?.settings, { timeout: 15_000, interval: 250 })
      .toEqual({ log_level: "debug", region: "eu" });
  });

  it("comes back online after the control plane restarts, without re-enrolling", async () => {
    const identityBefore = readFileSync(join(agentDir, "identity.json"), "utf8");
    await plane.stop();
    // The agent keeps running (offline-first) while the control plane is gone.
    await new Promise((r) => setTimeout(r, 1500));
    expect(agent?.child.exitCode).toBeNull();
    await plane.restart();
    const restartedAt = Date.now();
    // A fresh connection, not the directory's memory of the old one.
    const connectedAt = async () => {
      const res = await cli("node", "show", "e2e-1", "--format", "json");
      return Date.parse((JSON.parse(res.stdout) as { node: { connectedAt: string | null } }).node.connectedAt ?? "") || 0;
    };
    await expect.poll(connectedAt, { timeout: 70_000, interval: 1000 }).toBeGreaterThan(restartedAt - 1000);
    expect(await nodeOnline("e2e-1")).toBe(true);
    expect(readFileSync(join(agentDir, "identity.json"), "utf8")).toBe(identityBefore);
    const all = await nodes();
    expect(all.map((n) => `${n.id}:${n.state}`)).toEqual(["e2e-1:active"]);
  });

  it("marks a killed agent offline after three missed heartbeats", async () => {
    agent?.child.kill("SIGKILL");
    await agent?.exited;
    // Generous under a loaded CI machine; on failure, show what the control plane saw.
    const deadline = Date.now() + 40_000;
    while (await nodeOnline("e2e-1")) {
      if (Date.now() > deadline) {
        const row = (await nodes()).find((n) => n.id === "e2e-1");
        throw new Error(`still online 40 s after SIGKILL: ${JSON.stringify(row)}\n${plane.output.slice(-30).join("\n")}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  it("revocation ends the agent and every later connect", async () => {
    agent = startAgent(agentDir);
    await expect.poll(() => nodeOnline("e2e-1"), { timeout: 30_000, interval: 500 }).toBe(true);
    expect((await cli("node", "enroll", "revoke", "e2e-1", "--reason", "decommissioned")).code).toBe(0);
    expect(await withTimeout(agent.exited, 5000)).toBe(3);
    const again = startAgent(agentDir);
    expect(await withTimeout(again.exited, 10_000)).toBe(3);
    agent = undefined;
  });
});

function statMode(path: string): number {
  return existsSync(path) ? statSync(path).mode & 0o777 : -1;
}

function readSnapshot(dir: string): { settings: Record<string, unknown> } | null {
  const path = join(dir, "settings.json");
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as { settings: Record<string, unknown> };
  } catch {
    return null;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))]);
}
