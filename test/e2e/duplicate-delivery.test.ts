import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Fleet, startFleet } from "../helpers/fleet.ts";

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
  let fleet: Fleet;
  const outDir = mkdtempSync(join(tmpdir(), "zectre-dup-out-"));
  const api: Fleet["api"] = (method, path, body) => fleet.api(method, path, body);

  beforeAll(async () => {
    fleet = await startFleet(NODES, { heartbeatSeconds: 1, faultDuplicateDelivery: true }, { ZECTRE_AGENT_FAULT_DUPLICATE_SENDS: "1" });
  });

  afterAll(async () => {
    await fleet?.stop();
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
    expect(fleet.agents.every((a) => a.lines.some((l) => l.includes("action already applied")))).toBe(true);
  }, 300_000);
});
