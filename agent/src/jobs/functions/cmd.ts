import { type ChildProcess, spawn } from "node:child_process";
import { statSync } from "node:fs";
import { constants } from "node:os";
import type { JsonObject } from "../../../../protocol/json.ts";
import { errorCode, messageOf } from "../../state/files.ts";
import { argument, optionalNumber, optionalText, positional, scalarText } from "../args.ts";
import { CappedOutput } from "../output.ts";
import { abortReason, FunctionError, FunctionOutcome, type JobFunction } from "../types.ts";

/**
 * `cmd.run`: a shell command in its own process group (its own session, in
 * fact), so that cancel and timeout reach every process it started, not just
 * the shell: SIGTERM to the group, then SIGKILL once the grace period is over.
 */

export const DEFAULT_SHELL = "/bin/sh";

export interface CommandOptions {
  readonly command: string;
  readonly shell: string;
  readonly cwd: string | undefined;
  /** Variables set on top of the agent's environment; null unsets one. */
  readonly env: Readonly<Record<string, string | null>>;
  /** The command's own limit in seconds (the job's timeout applies as well). */
  readonly timeoutSeconds: number | undefined;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  retcode: number | null;
}

export const cmdFunctions: readonly JobFunction[] = [
  {
    name: "cmd.run",
    doc: "Runs a shell command (cmd= or the positional arguments; cwd=, env=, timeout=, shell=); returns {stdout, stderr, retcode}.",
    mutates: true,
    describe: (args) => {
      const options = commandOptions(args);
      return `run ${JSON.stringify(options.command)} with ${options.shell}${options.cwd === undefined ? "" : ` in ${options.cwd}`}`;
    },
    run: (args, context) => runCommand(commandOptions(args), context.signal, context.killGraceMs),
  },
];

export function commandOptions(args: JsonObject): CommandOptions {
  const cmd = argument(args, "cmd");
  const command = cmd !== undefined ? scalarText(cmd, "cmd") : positional(args).map((part) => scalarText(part, "a positional argument")).join(" ");
  if (command.trim() === "") throw new FunctionError("cmd.run needs a command (cmd= or positional arguments)");
  const shell = optionalText(args, "shell") ?? DEFAULT_SHELL;
  if (shell === "") throw new FunctionError("shell must not be empty");
  const cwd = optionalText(args, "cwd");
  if (cwd !== undefined && !cwd.startsWith("/")) throw new FunctionError(`cwd must be absolute, got '${cwd}'`);
  const timeoutSeconds = optionalNumber(args, "timeout");
  if (timeoutSeconds !== undefined && !(timeoutSeconds > 0)) throw new FunctionError("timeout must be a positive number of seconds");
  return { command, shell, cwd, env: envOption(args), timeoutSeconds };
}

function envOption(args: JsonObject): Record<string, string | null> {
  const env = argument(args, "env");
  if (env === undefined) return {};
  if (typeof env !== "object" || Array.isArray(env)) throw new FunctionError("env must be an object of variable names to values");
  const result: Record<string, string | null> = {};
  for (const [name, value] of Object.entries(env as JsonObject)) {
    if (name === "" || name.includes("=") || name.includes("\0")) throw new FunctionError(`env has an invalid variable name '${name}'`);
    const text = value === null ? null : scalarText(value, `env.${name}`);
    if (text?.includes("\0")) throw new FunctionError(`env.${name} must not contain a NUL byte`);
    Object.defineProperty(result, name, { value: text, enumerable: true, writable: true, configurable: true });
  }
  return result;
}

/**
 * Runs the command to its end (every process holding its output closed it), or
 * until the signal or its own timeout kills the group. Never rejects: failures
 * to start are a failed outcome like any other.
 */
export function runCommand(options: CommandOptions, signal: AbortSignal, killGraceMs: number): Promise<FunctionOutcome> {
  return new Promise((resolve) => {
    const stdout = new CappedOutput();
    const stderr = new CappedOutput();
    const result = (retcode: number | null): CommandResult => ({ stdout: stdout.text(), stderr: stderr.text(), retcode });

    if (options.cwd !== undefined && !isDirectory(options.cwd)) {
      resolve(new FunctionOutcome({ success: false, retcode: null, result: null, error: `cwd '${options.cwd}' is not a directory` }));
      return;
    }
    if (signal.aborted) {
      resolve(new FunctionOutcome({ success: false, retcode: null, result: null, error: abortReason(signal).message }));
      return;
    }

    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [name, value] of Object.entries(options.env)) {
      if (value === null) delete env[name];
      else env[name] = value;
    }

    let child: ChildProcess;
    try {
      // detached: the child calls setsid(), so its pid is its process group's id.
      child = spawn(options.shell, ["-c", options.command], { cwd: options.cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    } catch (error) {
      resolve(new FunctionOutcome({ success: false, retcode: null, result: null, error: `cannot start ${options.shell}: ${messageOf(error)}` }));
      return;
    }

    let settled = false;
    let killedFor: string | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const pid = child.pid;

    const kill = (why: string) => {
      if (killedFor !== undefined || settled) return;
      killedFor = why;
      if (pid === undefined) return;
      signalGroup(pid, "SIGTERM");
      killTimer = setTimeout(() => signalGroup(pid, "SIGKILL"), killGraceMs);
    };
    const onAbort = () => kill(abortReason(signal).message);
    signal.addEventListener("abort", onAbort, { once: true });
    if (options.timeoutSeconds !== undefined) {
      const seconds = options.timeoutSeconds;
      timeoutTimer = setTimeout(() => kill(`timed out after ${seconds}s`), seconds * 1000);
    }

    const settle = (value: FunctionOutcome) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      clearTimeout(timeoutTimer);
      // Once nothing is left in the group, there is nothing to SIGKILL (and its id may be reused).
      if (killTimer !== undefined && (pid === undefined || !groupAlive(pid))) clearTimeout(killTimer);
      resolve(value);
    };

    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (error) => {
      // Only a failure to start ends the run here; after a start, `close` always follows.
      if (pid === undefined) settle(new FunctionOutcome({ success: false, retcode: null, result: null, error: `cannot start ${options.shell}: ${messageOf(error)}` }));
    });
    child.on("close", (code: number | null, exitSignal: NodeJS.Signals | null) => {
      if (killedFor !== undefined) {
        settle(new FunctionOutcome({ success: false, retcode: null, result: result(null), error: killedFor }));
        return;
      }
      if (code !== null) {
        settle(
          new FunctionOutcome({ success: code === 0, retcode: code, result: result(code), error: code === 0 ? null : `command exited with code ${code}` }),
        );
        return;
      }
      // Killed by a signal from elsewhere: report it the way a shell would ($? = 128 + n).
      const number = exitSignal === null ? undefined : constants.signals[exitSignal];
      const retcode = number === undefined ? null : 128 + number;
      settle(new FunctionOutcome({ success: false, retcode, result: result(retcode), error: `command killed by ${exitSignal ?? "a signal"}` }));
    });
  });
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Signals every process in the group; a group that is already gone is fine. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left to signal; EPERM: not ours to kill (cannot happen for a group we started).
  }
}

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === "EPERM";
  }
}
