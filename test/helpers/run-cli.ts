import { spawn } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `zectre` binary as a child process. */
export function runCli(args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<CliResult> {
  const child = spawn(process.execPath, [join(PROJECT_ROOT, "cli/bin/zectre.ts"), ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: options.cwd, NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
