import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";

const NODES = ["chaos-1", "chaos-2", "chaos-3"];
const ROUNDS = 20;
/** Short reconnect backoff: the control plane dies every few seconds here. */
const AGENT_ENV = { ZECTRE_AGENT_BACKOFF_BASE_MS: "100", ZECTRE_AGENT_BACKOFF_CAP_MS: "1000" };

interface JobState {
  status: string;
  targets: { return: { success: boolean } | null }[];
}

/**
 * Design rule "nothing lost on a crash": SIGKILL the whole control plane at a random
 * moment while jobs run on three real agents, restart it, 20 times. Every accepted job
 * must complete, no return may be lost, and no node may run a job twice.
 */
describe("crashing the control plane while jobs run", () => {
  let plane: LocalControlPlane;
  let adminToken: string;
  const agents: RunningAgent[] = [];
  const outDir = mkdtempSync(join(tmpdir(), "zectre-chaos-out-"));

  const api = async (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${adminToken}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${plane.apiUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1 });
    adminToken = plane.adminToken();
    const token = (await api("POST", "/api/v1/enrollment-tokens", { uses: NODES.length, autoApprove: true })).body.token as string;
    for (const id of NODES) {
      const dir = mkdtempSync(join(tmpdir(), `zectre-${id}-`));
      const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", id, "--data-dir", dir]);
      if (enrolled.code !== 0) throw new Error(enrolled.stderr);
      agents.push(startAgent(dir, [], AGENT_ENV));
    }
  });

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it(`loses nothing and runs nothing twice over ${ROUNDS} crashes`, async () => {
    const accepted: Array<{ jid: string; node: string; round: number }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // One job per node, each appending its round to that node's own file.
      const submits = NODES.map(async (node) => {
        try {
          const res = await api("POST", "/api/v1/jobs", {
            targets: [node],
            function: "cmd.run",
            args: { cmd: `echo r${round} >> ${join(outDir, `${node}.log`)}; sleep 0.3` },
            timeout: 300,
          });
          if (res.status === 202) accepted.push({ jid: res.body.jid as string, node, round });
        } catch {
          // The crash hit the request itself: the client never learned of this job.
        }
      });
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 1500)));
      await plane.crash();
      await Promise.allSettled(submits);
      await plane.restart();
    }
    expect(accepted.length).toBeGreaterThan(ROUNDS);

    const statusOf = async (jid: string) => (await api("GET", `/api/v1/jobs/${jid}`)).body.job as JobState;
    for (const job of accepted) {
      await expect.poll(async () => (await statusOf(job.jid)).status, { timeout: 90_000, interval: 500 }).toBe("complete");
      expect((await statusOf(job.jid)).targets[0]?.return?.success).toBe(true);
    }
    for (const node of NODES) {
      const path = join(outDir, `${node}.log`);
      const lines = existsSync(path) ? readFileSync(path, "utf8").trim().split("\n") : [];
      // No round ran twice on a node, and every accepted job ran.
      expect(new Set(lines).size, `${node}: ${lines.join(" ")}`).toBe(lines.length);
      for (const job of accepted.filter((j) => j.node === node)) expect(lines).toContain(`r${job.round}`);
    }
  }, 600_000);
});
