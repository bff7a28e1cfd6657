import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect } from "vitest";
import type { Io } from "../../../cli/src/io.ts";
import { main } from "../../../cli/src/main.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BIN = join(REPO_ROOT, "cli", "bin", "zectre.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Added to a copy of the test process's environment with every ZECTRE_* variable removed. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** In-process only: pretend stdout and stderr are terminals. */
  tty?: boolean;
}

/** The environment a run sees: nothing from the developer's own zectre setup leaks in. */
export function isolatedEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("ZECTRE_") && !["XDG_CONFIG_HOME", "NO_COLOR", "FORCE_COLOR"].includes(key)) env[key] = value;
  }
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/**
 * Runs the real `cli/bin/zectre.ts` in a child Node. Asynchronous on purpose:
 * the fake API lives in this process and must keep answering while the child waits.
 */
export function runBinary(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return startBinary(args, options).result;
}

/** Like runBinary, but hands over the child too, e.g. to send it a signal while it runs. */
export function startBinary(args: readonly string[], options: RunOptions = {}): { child: ChildProcess; result: Promise<CliResult> } {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) throw new Error(`the CLI needs Node 22 (type stripping); this is ${process.version} — run the tests through npx/npm`);
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? tmpdir(),
    env: isolatedEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const result = new Promise<CliResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
  return { child, result };
}

/** Calls `main` directly: faster, and lets a test fake a terminal. */
export async function runInProcess(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const tty = options.tty === true;
  const io: Io = {
    stdout: { write: (chunk: string) => (stdout += chunk), isTTY: tty },
    stderr: { write: (chunk: string) => (stderr += chunk), isTTY: tty },
    env: isolatedEnv(options.env),
    cwd: options.cwd ?? tmpdir(),
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** A fresh directory per test, removed afterwards. Resolved through symlinks so paths compare equal. */
export function useTempDirs(): () => string {
  const made: string[] = [];
  afterEach(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), "zectre-cli-test-")));
    made.push(dir);
    return dir;
  };
}

/** stderr split into lines, so "exactly one line" is a plain length check. */
export function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** Exit 0 with nothing on stderr; returns stdout. */
export function expectOk(result: CliResult): string {
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return result.stdout;
}

/** Exit 1, no stdout, exactly one stderr line: equal to a string, or matching a pattern. */
export function expectOneErrorLine(result: CliResult, line: string | RegExp): void {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe("");
  expect(lines(result.stderr)).toHaveLength(1);
  if (typeof line === "string") expect(result.stderr).toBe(`${line}\n`);
  else expect(result.stderr).toMatch(line);
}
