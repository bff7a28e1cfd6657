import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";

const NODES = ["dup-1", "dup-2"];
const JOBS_PER_NODE = 10;

interface JobState {
  status: string;
  counts: { targets: number; returned: number; succeeded: number };
}

/**
 * At-least-once plus dedup, on purpose: node objects send every action twice and
 * agents send every return twice. No job may run twice and no return may count twice.
 */
describe("every dispatch and return delivered twice", () => {
  let plane: LocalControlPlane;
  let adminToken: string;
  const agents: RunningAgent[] = [];
  const outDir = mkdtempSync(join(tmpdir(), "zectre-dup-out-"));

  const api = async (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${adminToken}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${plane.apiUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1, faultDuplicateDelivery: true });
    adminToken = plane.adminToken();
    const token = (await api("POST", "/api/v1/enrollment-tokens", { uses: NODES.length, autoApprove: true })).body.token as string;
    for (const id of NODES) {
      const dir = mkdtempSync(join(tmpdir(), `zectre-${id}-`));
      const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", id, "--data-dir", dir]);
      if (enrolled.code !== 0) throw new Error(enrolled.stderr);
      agents.push(startAgent(dir, [], { ZECTRE_AGENT_FAULT_DUPLICATE_SENDS: "1" }));
    }
  });

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("runs each job once per node and counts each return once", async () => {
    const jids: string[] = [];
    for (let i = 1; i <= JOBS_PER_NODE; i++) {
      for (const node of NODES) {
        const res = await api("POST", "/api/v1/jobs", {
          targets: [node],
          function: "cmd.run",
          args: { cmd: `echo j${i} >> ${join(outDir, `${node}.log`)}` },
        });
        expect(res.status).toBe(202);
        jids.push(res.body.jid as string);
      }
    }
    for (const jid of jids) {
      await expect.poll(async () => ((await api("GET", `/api/v1/jobs/${jid}`)).body.job as JobState).status, { timeout: 60_000 }).toBe("complete");
      expect(((await api("GET", `/api/v1/jobs/${jid}`)).body.job as JobState).counts).toMatchObject({ targets: 1, returned: 1, succeeded: 1 });
    }
    for (const node of NODES) {
      const path = join(outDir, `${node}.log`);
      const lines = existsSync(path) ? readFileSync(path, "utf8").trim().split("\n") : [];
      expect(lines.sort()).toEqual(Array.from({ length: JOBS_PER_NODE }, (_, i) => `j${i + 1}`).sort());
    }
    // The faults were really on: agents saw repeated actions and dropped them.
    expect(agents.every((a) => a.lines.some((l) => l.includes("action already applied")))).toBe(true);
  }, 300_000);
});
