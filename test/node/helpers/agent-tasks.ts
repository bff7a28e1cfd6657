import { cpSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach } from "vitest";
import { Logger } from "../../../agent/src/log.ts";
import { TaskSupervisor, type TaskSupervisorOptions } from "../../../agent/src/tasks/supervisor.ts";
import type { TaskArtifacts, TaskTimings } from "../../../agent/src/tasks/task.ts";
import { type LogLine, newDeploymentId, newTaskId, type TaskStart, type TaskStatusMessage } from "../../../protocol/deployments.ts";
import { REPO_ROOT } from "./run-cli.ts";

/** The task supervisor in-process over a temp data dir, running the hello-app fixture as real processes. */

export const HELLO_APP = join(REPO_ROOT, "test", "fixtures", "hello-app");

/** Fast timings, so crash/restart/health cycles take milliseconds, not seconds. */
export const FAST_TIMINGS: TaskTimings = {
  healthIntervalMs: 50,
  healthTimeoutMs: 1_000,
  unhealthyAfter: 3,
  restartBaseMs: 50,
  restartCapMs: 400,
  stableMs: 60_000,
  shutdownGraceMs: 2_000,
};

/** Stands in for the artifact store: "unpacking" copies the fixture directory. */
export class FixtureArtifacts implements TaskArtifacts {
  readonly source: string;
  unpacked = 0;
  /** Errors to throw on the next unpacks, in turn (a download failing while the control plane is away). */
  readonly failures: Error[] = [];

  constructor(source: string = HELLO_APP) {
    this.source = source;
  }

  async unpack(_refs: unknown, destDir: string): Promise<void> {
    const failure = this.failures.shift();
    if (failure) throw failure;
    cpSync(this.source, destDir, { recursive: true });
    this.unpacked++;
  }
}

export function helloSpec(overrides: Partial<TaskStart> = {}): TaskStart {
  return {
    kind: "task.start",
    taskId: newTaskId(),
    app: "hello",
    deploymentId: newDeploymentId(),
    artifacts: [{ digest: "a".repeat(64), size: 1234, layer: "app" }],
    command: "node server.mjs",
    env: {},
    healthCheck: { type: "http", path: "/healthz" },
    resources: { cpu: 0.1, memoryMb: 128 },
    runtime: "process",
    port: null,
    ...overrides,
  };
}

export interface SupervisorHarness {
  readonly supervisor: TaskSupervisor;
  readonly artifacts: FixtureArtifacts;
  readonly statuses: TaskStatusMessage[];
  readonly lines: LogLine[];
  readonly logs: Record<string, unknown>[];
  /** `state/restarts` of one task's statuses, in order: the lifecycle as the control plane sees it. */
  states(taskId: string): string[];
}

/** Makes supervisors whose processes are ended after each test (as an agent shutdown would). */
export function useSupervisors(): (dataDir: string, options?: Partial<TaskSupervisorOptions>) => SupervisorHarness {
  const made: TaskSupervisor[] = [];
  afterEach(async () => {
    for (const supervisor of made.splice(0)) await supervisor.shutdown();
  });
  return (dataDir, options = {}) => {
    const statuses: TaskStatusMessage[] = [];
    const lines: LogLine[] = [];
    const logs: Record<string, unknown>[] = [];
    const artifacts = new FixtureArtifacts();
    const supervisor = new TaskSupervisor({
      dataDir,
      artifacts,
      logger: new Logger({ sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) }),
      enqueue: (message) => statuses.push(message),
      output: (line) => lines.push(line),
      timings: FAST_TIMINGS,
      ...options,
    });
    made.push(supervisor);
    return {
      supervisor,
      artifacts,
      statuses,
      lines,
      logs,
      states: (taskId) => statuses.filter((s) => s.taskId === taskId).map((s) => `${s.state}/${s.restarts}`),
    };
  };
}

/** GETs a path of a task on its loopback port. */
export async function getText(port: number, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, text: await response.text() };
}

/**
 * The local addresses of every listening TCP socket on `port`, from /proc/net
 * (Linux): what the task really bound, whatever it claims.
 */
export function listeningAddresses(port: number): string[] {
  const found: string[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const row of text.split("\n").slice(1)) {
      const [, local, , state] = row.trim().split(/\s+/);
      if (state !== "0A" || !local) continue;
      const [hexAddress = "", hexPort = ""] = local.split(":");
      if (Number.parseInt(hexPort, 16) === port) found.push(decodeAddress(hexAddress));
    }
  }
  return found;
}

function decodeAddress(hex: string): string {
  if (hex.length === 8) {
    // IPv4, in host (little-endian) byte order.
    return [6, 4, 2, 0].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)).join(".");
  }
  return hex === "00000000000000000000000001000000" ? "::1" : hex === "0".repeat(32) ? "::" : hex;
}
