import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Fleet, startFleet } from "../helpers/fleet.ts";

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
  let fleet: Fleet;
  const outDir = mkdtempSync(join(tmpdir(), "zectre-chaos-out-"));
  const api: Fleet["api"] = (method, path, body) => fleet.api(method, path, body);

  beforeAll(async () => {
    fleet = await startFleet(NODES, { heartbeatSeconds: 1 }, AGENT_ENV);
  });

  afterAll(async () => {
    await fleet?.stop();
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
      await fleet.plane.crash();
      await Promise.allSettled(submits);
      await fleet.plane.restart();
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
