import { type AppEvent, type AppEventType, TASK_STATES, type TaskState } from "../../protocol/deployments.ts";
import type { JsonObject } from "../../protocol/json.ts";
import type { ApiClient } from "./client.ts";
import { CliError, oneLine } from "./errors.ts";
import type { Io } from "./io.ts";
import type { Colors } from "./output.ts";
import { parseStreamJson, readWithReconnects } from "./deploy-stream.ts";
import { taskLine, type TaskView } from "./deploy-format.ts";

/**
 * Follows one new deployment through its app's event stream until every task is
 * healthy, the deadline passes, or Ctrl-C. A failing task is not the end: the agent
 * restarts it with backoff and the scheduler re-places lost ones, so only the
 * deadline turns "not healthy yet" into a failure.
 */

export type WatchOutcome = "healthy" | "timeout" | "interrupted";

export interface WatchResult {
  readonly outcome: WatchOutcome;
  readonly board: TaskBoard;
  /** The scheduler's last word on why it could not place a task, if it said so. */
  readonly placement: string | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const text = (value: unknown): string | null => (typeof value === "string" ? value : null);

/** One stream message as an app event, or undefined for messages that are not one (comments, pings). */
export function parseAppEvent(data: string, label: string): AppEvent | undefined {
  const value = parseStreamJson(data, label);
  if (!isRecord(value) || typeof value["seq"] !== "number" || typeof value["type"] !== "string") {
    throw new CliError(`${label} sent something that is not an app event: ${oneLine(data).slice(0, 80)}`);
  }
  return {
    seq: value["seq"],
    ts: text(value["ts"]) ?? "",
    // Unknown types pass through and are ignored: wire changes are additive.
    type: value["type"] as AppEventType,
    deploymentId: text(value["deploymentId"]),
    taskId: text(value["taskId"]),
    data: isRecord(value["data"]) ? (value["data"] as JsonObject) : {},
  };
}

const TASK_EVENTS: readonly AppEventType[] = ["task.assigned", "task.state", "task.lost"];

/** The tasks of one deployment as its events describe them. */
export class TaskBoard {
  readonly #tasks = new Map<string, TaskView>();

  /** Applies a task event; returns the task when its state (or port) changed, so it is worth a line. */
  apply(event: AppEvent): TaskView | undefined {
    if (event.taskId === null || !TASK_EVENTS.includes(event.type)) return undefined;
    const known = this.#tasks.get(event.taskId);
    const state = event.type === "task.assigned" ? "assigned" : event.type === "task.lost" ? "lost" : text(event.data["state"]);
    if (state === null || !(TASK_STATES as readonly string[]).includes(state)) return undefined;
    const hostPort = typeof event.data["hostPort"] === "number" ? event.data["hostPort"] : (known?.hostPort ?? null);
    const task: TaskView = {
      taskId: event.taskId,
      nodeId: text(event.data["nodeId"]) ?? known?.nodeId ?? "?",
      state: state as TaskState,
      hostPort,
      message: text(event.data["message"]) ?? text(event.data["reason"]),
    };
    this.#tasks.set(task.taskId, task);
    if (known && known.state === task.state && known.hostPort === task.hostPort) return undefined;
    return task;
  }

  healthy(): number {
    return [...this.#tasks.values()].filter((task) => task.state === "healthy").length;
  }

  /** Every task not (yet) healthy, for the line that explains a failure. */
  unhealthy(): TaskView[] {
    return [...this.#tasks.values()].filter((task) => task.state !== "healthy" && task.state !== "stopped" && task.state !== "stopping");
  }
}

export interface WatchOptions {
  readonly client: ApiClient;
  readonly io: Io;
  readonly colors: Colors;
  readonly app: string;
  readonly deploymentId: string;
  readonly replicas: number;
  readonly timeoutSeconds: number;
  /** Opened before the deployment was created, so none of its events can be missed. */
  readonly stream: ReadableStream<Uint8Array>;
  /** The controller `stream` was opened with: aborting it is how the deadline and Ctrl-C end the watch. */
  readonly controller: AbortController;
  /** Writes one progress line for a person. */
  readonly say: (line: string) => void;
}

export async function watchDeployment(options: WatchOptions): Promise<WatchResult> {
  const { client, app, deploymentId } = options;
  const board = new TaskBoard();
  const controller = options.controller;
  if (options.replicas === 0) {
    controller.abort();
    return { outcome: "healthy", board, placement: null };
  }

  let why: "timeout" | "interrupted" | undefined;
  const stop = (reason: "timeout" | "interrupted") => {
    why ??= reason;
    controller.abort();
  };
  const timer = setTimeout(() => stop("timeout"), options.timeoutSeconds * 1000);
  const stopListening = options.io.onInterrupt?.(() => stop("interrupted"));

  const label = `the event stream of app ${app}`;
  let pending: ReadableStream<Uint8Array> | undefined = options.stream;
  let since: number | undefined;
  let placement: string | null = null;
  const onEvent = (event: AppEvent): boolean => {
    since = event.seq;
    if (event.deploymentId !== deploymentId) return false;
    if (event.type === "deployment.status") return text(event.data["status"]) === "healthy";
    if (event.type === "placement.failed") {
      const message = oneLine(text(event.data["message"]) ?? "no reason given");
      if (message !== placement) options.say(`  ${options.colors.yellow("cannot place a task yet:")} ${message}`);
      placement = message;
      return false;
    }
    const changed = board.apply(event);
    if (changed) options.say(`  ${taskLine(changed, options.colors)}`);
    return board.healthy() >= options.replicas;
  };

  try {
    const end = await readWithReconnects(
      {
        label,
        resumeHint: `zectre deployments ${app}`,
        open: (signal) => {
          const first = pending;
          pending = undefined;
          return first ? Promise.resolve(first) : client.appEvents(app, since, signal);
        },
        onData: (data) => {
          const event = parseAppEvent(data, label);
          return event !== undefined && onEvent(event);
        },
      },
      controller.signal,
    );
    return { outcome: end === "aborted" ? (why ?? "interrupted") : "healthy", board, placement };
  } finally {
    clearTimeout(timer);
    stopListening?.();
    // The stream never ends by itself: closing it is how the watch lets go of the connection.
    controller.abort();
  }
}
