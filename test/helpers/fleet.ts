import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningAgent, runAgentCommand, startAgent } from "./agent-process.ts";
import { type LaunchOptions, type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "./local-control-plane.ts";

/** A local control plane with real agents enrolled (auto-approved) and running, and a JSON client as org admin. */
export interface Fleet {
  plane: LocalControlPlane;
  agents: RunningAgent[];
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  stop(): Promise<void>;
}

export async function startFleet(nodeIds: readonly string[], options: LaunchOptions, agentEnv: Record<string, string> = {}): Promise<Fleet> {
  const plane = await startLocalControlPlane(options);
  const adminToken = plane.adminToken();
  const api: Fleet["api"] = async (method, path, body) => {
    const headers: Record<string, string> = { authorization: `Bearer ${adminToken}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${plane.apiUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const token = (await api("POST", "/api/v1/enrollment-tokens", { uses: nodeIds.length, autoApprove: true })).body.token as string;
  const agents: RunningAgent[] = [];
  for (const id of nodeIds) {
    const dir = mkdtempSync(join(tmpdir(), `zectre-${id}-`));
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", token, "--id", id, "--data-dir", dir]);
    if (enrolled.code !== 0) throw new Error(enrolled.stderr);
    agents.push(startAgent(dir, [], agentEnv));
  }
  return {
    plane,
    agents,
    api,
    async stop() {
      for (const agent of agents) await agent.stop();
      await plane.stop();
      removeControlPlane(plane);
    },
  };
}
