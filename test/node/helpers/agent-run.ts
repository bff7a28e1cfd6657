import { type ChildProcess, spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { isolatedEnv, REPO_ROOT } from "./run-cli.ts";
import { until } from "./agent-control-plane.ts";

/** Runs the real `agent/bin/zectre-agent.ts` in a child Node, the way a host (or systemd) would. */

export const AGENT_BIN = join(REPO_ROOT, "agent", "bin", "zectre-agent.ts");

export interface AgentResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface AgentProcess {
  readonly child: ChildProcess;
  /** stdout so far. */
  stdout(): string;
  stderr(): string;
  /** stdout's complete lines parsed as JSON (the log); a line that is not JSON fails the test. */
  logs(): Record<string, unknown>[];
  /** Waits for a log line with this `msg`. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  readonly exited: Promise<AgentResult>;
}

const running = new Set<ChildProcess>();

/** Kills whatever a failed test left running. */
export function useAgentProcesses(): void {
  afterEach(() => {
    for (const child of running) child.kill("SIGKILL");
    running.clear();
  });
}

export function startAgent(args: readonly string[], env: Record<string, string | undefined> = {}): AgentProcess {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) throw new Error(`the agent needs Node 22 (type stripping); this is ${process.version} — run the tests through npx/npm`);
  const child = spawn(process.execPath, [AGENT_BIN, ...args], { cwd: tmpdir(), env: isolatedEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<AgentResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  const logs = () =>
    stdout
      .split("\n")
      .slice(0, -1)
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    logs,
    waitForLog: (msg, timeoutMs = 5_000) => until(() => logs().find((line) => line.msg === msg), `log '${msg}' (stderr: ${stderr})`, timeoutMs),
    exited,
  };
}

/** Runs a command to completion. */
export function runAgentCommand(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<AgentResult> {
  return startAgent(args, env).exited;
}
