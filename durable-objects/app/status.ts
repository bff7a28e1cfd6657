import type { DeploymentStatus, TaskState } from "../../protocol/deployments.ts";

/** Task states that count as running or about to run. */
export const LIVE_TASK_STATES: readonly TaskState[] = ["assigned", "starting", "healthy", "unhealthy", "crashed"];
const FAILING: readonly TaskState[] = ["unhealthy", "crashed"];

/**
 * A deployment's status, derived from the tasks it wants to run (a live view, recomputed on every task change):
 * `stopped` wants no tasks (`idle`: because it scaled to zero for lack of requests); `pending` has none placed yet;
 * `healthy` has every replica healthy; `failed` has nothing healthy and every placed task failing; `degraded` has
 * some healthy and some failing; else `deploying`.
 */
export function deploymentStatus(replicas: number, liveTaskStates: readonly TaskState[], idle: boolean = false): DeploymentStatus {
  if (replicas === 0) return idle ? "idle" : "stopped";
  if (liveTaskStates.length === 0) return "pending";
  const healthy = liveTaskStates.filter((s) => s === "healthy").length;
  const failing = liveTaskStates.filter((s) => FAILING.includes(s)).length;
  if (healthy >= replicas) return "healthy";
  if (healthy === 0 && failing === liveTaskStates.length) return "failed";
  if (healthy > 0 && failing > 0) return "degraded";
  return "deploying";
}
