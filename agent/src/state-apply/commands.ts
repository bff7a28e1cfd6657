import type { CommandResult } from "../jobs/functions/cmd.ts";
import { DEFAULT_SHELL, runCommand } from "../jobs/functions/cmd.ts";

/**
 * How states run programs. `cmd.run` (and its `unless` / `onlyif` checks) goes
 * through the shell; `pkg.*` and `service.*` call a `CommandRunner` with an argv,
 * which tests replace with a fake. Both run in their own process group, which
 * the apply's AbortSignal kills (SIGTERM, then SIGKILL after the grace period).
 */

/** SIGTERM → SIGKILL delay, as the job runner's default (not imported: the runner imports the function registry). */
export const DEFAULT_KILL_GRACE_MS = 2_000;

export interface CommandRun {
  /** The exit code; null when the command was killed or could not start. 127 conventionally means "not found". */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Why there is no exit code (killed, canceled, could not start), else null. */
  readonly error: string | null;
}

export type CommandRunner = (argv: readonly string[], signal: AbortSignal) => Promise<CommandRun>;

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/** Runs a shell command line in its own process group (cmd.ts's runner); never rejects. */
export async function runShell(command: string, cwd: string | undefined, signal: AbortSignal, killGraceMs: number = DEFAULT_KILL_GRACE_MS): Promise<CommandRun> {
  const outcome = await runCommand({ command, shell: DEFAULT_SHELL, cwd, env: {}, timeoutSeconds: undefined }, signal, killGraceMs);
  const result = outcome.result as CommandResult | null;
  return {
    code: outcome.retcode,
    stdout: result?.stdout ?? "",
    stderr: result?.stderr ?? "",
    error: outcome.retcode === null ? (outcome.error ?? "command did not finish") : null,
  };
}

/** The real runner for pkg/service states: the argv, quoted, through /bin/sh (so a missing program exits 127). */
export function systemCommandRunner(killGraceMs: number = DEFAULT_KILL_GRACE_MS): CommandRunner {
  return (argv, signal) => runShell(argv.map(shellQuote).join(" "), undefined, signal, killGraceMs);
}
