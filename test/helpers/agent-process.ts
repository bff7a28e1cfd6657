import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";
import { type CliResult, runNodeProgram } from "./child-process.ts";

const AGENT_BIN = join(PROJECT_ROOT, "agent/bin/zectre-agent.ts");

/** Runs a `zectre-agent` command to completion. */
export function runAgentCommand(args: string[]): Promise<CliResult> {
  return runNodeProgram(AGENT_BIN, args, { cwd: PROJECT_ROOT });
}

/** A long-running `zectre-agent run` whose log lines are kept for assertions. */
export interface RunningAgent {
  dataDir: string;
  child: ChildProcess;
  lines: string[];
  exited: Promise<number>;
  stop(): Promise<number>;
}

export function startAgent(dataDir: string, extraArgs: string[] = [], env: Record<string, string> = {}): RunningAgent {
  const child = spawn(process.execPath, [AGENT_BIN, "run", "--data-dir", dataDir, ...extraArgs], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  return {
    dataDir,
    child,
    lines,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}
