import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "./control-plane.ts";

/** The agent `npm run dev` runs on this machine, so a newcomer has a node to target at once. */

const AGENT_BIN = join(PROJECT_ROOT, "agent/bin/zectre-agent.ts");

function runToEnd(args: string[], onOutput: (line: string) => void): Promise<number> {
  const child = spawn(process.execPath, [AGENT_BIN, ...args], { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const forward = (chunk: Buffer) => chunk.toString("utf8").split("\n").filter(Boolean).forEach(onOutput);
  child.stdout.on("data", forward);
  child.stderr.on("data", forward);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code ?? 1)));
}

async function createEnrollmentToken(apiUrl: string, adminToken: string): Promise<string> {
  const res = await fetch(`${apiUrl}/api/v1/enrollment-tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ uses: 1, ttlSeconds: 600, autoApprove: true, labels: { local: "true" } }),
  });
  if (res.status !== 201) throw new Error(`creating the local agent's enrollment token failed: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** Enrolls once (auto-approved, label local=true), then runs the agent from its data dir on every start. */
export async function startLocalAgent(
  apiUrl: string,
  dataDir: string,
  adminToken: string,
  onOutput: (line: string) => void,
): Promise<ChildProcess> {
  if (!existsSync(join(dataDir, "identity.json"))) {
    const token = await createEnrollmentToken(apiUrl, adminToken);
    const code = await runToEnd(["enroll", "--url", apiUrl, "--token", token, "--data-dir", dataDir], onOutput);
    if (code !== 0) throw new Error(`the local agent could not enroll (exit ${code})`);
  }
  const child = spawn(process.execPath, [AGENT_BIN, "run", "--data-dir", dataDir], {
    cwd: PROJECT_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const forward = (chunk: Buffer) => chunk.toString("utf8").split("\n").filter(Boolean).forEach(onOutput);
  child.stdout?.on("data", forward);
  child.stderr?.on("data", forward);
  return child;
}
