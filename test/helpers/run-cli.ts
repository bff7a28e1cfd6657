import { join } from "node:path";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";
import { type CliResult, runNodeProgram } from "./child-process.ts";

export type { CliResult };

/** Runs the real `zectre` binary as a child process. */
export function runCli(args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<CliResult> {
  return runNodeProgram(join(PROJECT_ROOT, "cli/bin/zectre.ts"), args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: options.cwd, NO_COLOR: "1", ...options.env },
  });
}
