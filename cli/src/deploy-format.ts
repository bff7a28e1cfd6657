import { DEFAULT_IDLE_TIMEOUT_SECONDS, type DeploymentRecord, type StoredLogLine, type TaskState } from "../../protocol/deployments.ts";
import { oneLine } from "./errors.ts";
import { type Colors, formatTime, table } from "./output.ts";

/** How the deployment commands print records for people; json and yaml print the API's objects instead. */

export const DEPLOYMENT_HEADERS = ["ID", "APP", "STATUS", "REPLICAS", "PROMOTED", "CREATED"] as const;

/** REPLICAS reads `healthy/wanted`, so a half-up deployment shows at a glance, then the minimum kept while idle, if any. */
export function deploymentRow(deployment: DeploymentRecord): string[] {
  const healthy = deployment.tasks.filter((task) => task.state === "healthy").length;
  const { minReplicas, idleTimeoutSeconds = DEFAULT_IDLE_TIMEOUT_SECONDS } = deployment.spec;
  const idle = minReplicas === undefined ? "" : ` (min ${minReplicas} after ${formatSeconds(idleTimeoutSeconds)} idle)`;
  return [
    deployment.id,
    deployment.app,
    deployment.status,
    `${healthy}/${deployment.replicas}${idle}`,
    deployment.promoted ? "yes" : "-",
    formatTime(deployment.createdAt, "-"),
  ];
}

export function deploymentTable(deployments: readonly DeploymentRecord[], colors: Colors): string[] {
  return table(DEPLOYMENT_HEADERS, deployments.map(deploymentRow), colors);
}

/** `90s`, `5m`, `2h`: the largest unit that divides the seconds. */
export function formatSeconds(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** `1.5 KiB`, `12.0 MiB`: binary units, one decimal above bytes. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const BAD_STATES: readonly TaskState[] = ["unhealthy", "crashed", "lost"];

export interface TaskView {
  readonly taskId: string;
  readonly nodeId: string;
  readonly state: TaskState;
  readonly hostPort: number | null;
  readonly message: string | null;
}

/** `t0k3x9ab12 on web-1: healthy (127.0.0.1:41234)`; a failing state carries its message. */
export function taskLine(task: TaskView, colors: Colors): string {
  let state: string = task.state;
  if (task.state === "healthy") state = colors.green(task.hostPort === null ? "healthy" : `healthy (127.0.0.1:${task.hostPort})`);
  else if (BAD_STATES.includes(task.state)) state = colors.red(task.message ? `${task.state}: ${oneLine(task.message)}` : task.state);
  return `${oneLine(task.taskId)} on ${oneLine(task.nodeId)}: ${state}`;
}

/**
 * `2026-11-23T10:00:00Z web-1/t0k3x9ab12 | line`: second precision, the node and task
 * the line came from, and `!` instead of `|` for stderr. Control characters in the
 * line are shown escaped so a task cannot drive the reader's terminal.
 */
export function logLineText(line: StoredLogLine, colors: Colors): string {
  const at = Number.isNaN(Date.parse(line.ts)) ? line.ts : `${new Date(line.ts).toISOString().slice(0, 19)}Z`;
  const source = `${oneLine(line.nodeId)}/${oneLine(line.taskId)}`;
  const text = escapeControls(line.line);
  if (line.stream === "stderr") return `${colors.dim(at)} ${source} ${colors.red("!")} ${text}`;
  return `${colors.dim(at)} ${source} | ${text}`;
}

function escapeControls(text: string): string {
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
