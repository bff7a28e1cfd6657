import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GLOBAL_OPTIONS } from "../../../cli/src/args.ts";
import { COMMAND_TABLE } from "../../../cli/src/commands/index.ts";
import { createDeployCommand } from "../../../cli/src/commands/deploy.ts";
import type { PreparedArtifacts, ProgressSink } from "../../../cli/src/artifacts.ts";
import type { PrepareArtifacts } from "../../../cli/src/deploy-run.ts";
import type { Io } from "../../../cli/src/io.ts";
import { main } from "../../../cli/src/main.ts";
import { buildRegistry } from "../../../cli/src/registry.ts";
import { type CliResult, isolatedEnv } from "./run-cli.ts";

/** Runs the CLI in-process with a fake artifact step for `deploy`, everything else as shipped. */

export const APP_DIGEST = "a".repeat(64);
export const DEPS_DIGEST = "d".repeat(64);

export const FAKE_ARTIFACTS: PreparedArtifacts = {
  refs: [
    { digest: APP_DIGEST, size: 4200, layer: "app" },
    { digest: DEPS_DIGEST, size: 3_300_000, layer: "deps" },
  ],
  layers: [
    { layer: "app", digest: APP_DIGEST, size: 4200, files: 12, uploaded: true, reusedBy: null },
    { layer: "deps", digest: DEPS_DIGEST, size: 3_300_000, files: 1203, uploaded: false, reusedBy: "lockfile" },
  ],
};

export interface FakePrepare {
  readonly prepare: PrepareArtifacts;
  /** The directories it was asked to pack, in order. */
  readonly dirs: string[];
}

export function fakePrepare(result: PreparedArtifacts = FAKE_ARTIFACTS): FakePrepare {
  const dirs: string[] = [];
  const prepare: PrepareArtifacts = async (dir, _client, progress) => {
    dirs.push(dir);
    progress({ layer: "app", phase: "pack", done: 1, total: 1 });
    return structuredClone(result);
  };
  return { prepare, dirs };
}

export interface InProcessOptions {
  cwd: string;
  configDir: string;
  prepare?: PrepareArtifacts;
  /** Receives the handler the CLI registers for Ctrl-C, so a test can "press" it. */
  onInterrupt?: (handler: () => void) => void;
  /** Sees stdout as it is written, for tests that act on progress. */
  onStdout?: (chunk: string) => void;
  tty?: boolean;
}

export async function runWithFakeArtifacts(args: readonly string[], options: InProcessOptions): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const progress = (): ProgressSink => () => undefined;
  const prepare = options.prepare ?? fakePrepare().prepare;
  const table = COMMAND_TABLE.map((entry) => (entry.path.join(" ") === "deploy" ? createDeployCommand(prepare, progress) : entry));
  const registry = buildRegistry(table, GLOBAL_OPTIONS, "zectre under test");
  const tty = options.tty === true;
  const io: Io = {
    stdout: {
      write: (chunk: string) => {
        stdout += chunk;
        options.onStdout?.(chunk);
      },
      isTTY: tty,
    },
    stderr: { write: (chunk: string) => (stderr += chunk), isTTY: tty },
    env: isolatedEnv({ ZECTRE_CONFIG_DIR: options.configDir }),
    cwd: options.cwd,
    ...(options.onInterrupt
      ? {
          onInterrupt: (handler: () => void) => {
            options.onInterrupt?.(handler);
            return () => undefined;
          },
        }
      : {}),
  };
  const code = await main(args, io, registry);
  return { code, stdout, stderr };
}

/** A directory holding the given files (paths relative to it; objects are written as JSON). */
export function writeTree(dir: string, files: Record<string, string | object>): string {
  for (const [path, content] of Object.entries(files)) {
    const full = join(dir, path);
    mkdirSync(join(full, ".."), { recursive: true });
    writeFileSync(full, typeof content === "string" ? content : JSON.stringify(content));
  }
  return dir;
}

export async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
