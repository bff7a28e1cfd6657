import { DEFAULT_IDLE_TIMEOUT_SECONDS, type DeploymentStatus } from "../../protocol/deployments.ts";
import type { RouteIdle } from "../../protocol/tunnel.ts";
import { type DeploymentRow, specOf } from "./deployment-store.ts";

/**
 * Scale to zero (or down to any minimum): a deployment whose config sets `minReplicas` below `replicas`
 * runs only `minReplicas` once no request has reached it for `idleTimeoutSeconds`, and all of its replicas
 * again after the next request. The idle clock restarts on every request the proxy reports, when the
 * deployment becomes healthy and when it wakes, so tasks are never stopped before they could serve.
 */

export interface IdlePolicy {
  minReplicas: number;
  idleTimeoutMs: number;
}

/** The proxy reports requests at most this often per isolate, and at least a few times per idle timeout. */
const MAX_TOUCH_EVERY_MS = 5_000;
const MIN_TOUCH_EVERY_MS = 250;

/** While tasks are being placed or started the deployment is left alone: stopping them would waste the start. */
const SETTLING: readonly DeploymentStatus[] = ["pending", "deploying"];

/** Null when the deployment never scales down (no `minReplicas`, or not below its replicas). */
export function idlePolicy(row: DeploymentRow): IdlePolicy | null {
  const spec = specOf(row);
  if (spec.minReplicas === undefined || spec.minReplicas >= row.replicas) return null;
  return { minReplicas: spec.minReplicas, idleTimeoutMs: (spec.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000 };
}

/** What the proxy needs: how often to report requests, and whether to wake and hold when nothing is healthy. */
export function routeIdle(policy: IdlePolicy): RouteIdle {
  const touchEveryMs = Math.max(MIN_TOUCH_EVERY_MS, Math.min(MAX_TOUCH_EVERY_MS, Math.floor(policy.idleTimeoutMs / 4)));
  return { touchEveryMs, scalesToZero: policy.minReplicas === 0 };
}

interface ActivityRow extends Record<string, SqlStorageValue> {
  deployment_id: string;
  active_at: number;
  idle_since: number | null;
}

/** Per deployment: when it was last active, and since when it is idle (scaled down). */
export class ActivityStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** A request, a wake or a newly healthy deployment: the idle clock restarts. */
  touch(deploymentId: string, now: number): void {
    this.sql.exec(
      `INSERT INTO deployment_activity (deployment_id, active_at) VALUES (?, ?)
       ON CONFLICT (deployment_id) DO UPDATE SET active_at = MAX(active_at, excluded.active_at)`,
      deploymentId, now,
    );
  }

  get(deploymentId: string): ActivityRow | null {
    return this.sql.exec<ActivityRow>("SELECT * FROM deployment_activity WHERE deployment_id = ?", deploymentId).toArray()[0] ?? null;
  }

  isIdle(deploymentId: string): boolean {
    return (this.get(deploymentId)?.idle_since ?? null) !== null;
  }

  /** True when it was awake, so this call made it idle (alarms run at least once: a repeat changes nothing). */
  sleep(deploymentId: string, now: number): boolean {
    this.touch(deploymentId, 0);
    return this.sql.exec("UPDATE deployment_activity SET idle_since = ? WHERE deployment_id = ? AND idle_since IS NULL", now, deploymentId).rowsWritten > 0;
  }

  /** True when it was idle, so this call woke it. The idle clock restarts either way. */
  wake(deploymentId: string, now: number): boolean {
    const wasIdle = this.isIdle(deploymentId);
    this.touch(deploymentId, now);
    if (wasIdle) this.sql.exec("UPDATE deployment_activity SET idle_since = NULL WHERE deployment_id = ?", deploymentId);
    return wasIdle;
  }
}

/** How many tasks the deployment wants now: its minimum while idle, else its replicas. */
export function targetReplicas(row: DeploymentRow, activity: ActivityStore): number {
  const policy = idlePolicy(row);
  return policy !== null && activity.isIdle(row.id) ? policy.minReplicas : row.replicas;
}

/** `idleSince` for a deployment record; nothing for deployments that never scale down. */
export function idleSinceOf(row: DeploymentRow, activity: ActivityStore): { idleSince?: string | null } {
  if (idlePolicy(row) === null) return {};
  const since = activity.get(row.id)?.idle_since ?? null;
  return { idleSince: since === null ? null : new Date(since).toISOString() };
}

/**
 * When each of these deployments falls idle. Left out: those that never scale down, are idle already,
 * are still settling, or are being promoted (a promotion waits for them to be healthy).
 */
export function idleDeadlines(rows: readonly DeploymentRow[], promoting: string | null, activity: ActivityStore): Array<{ id: string; dueAt: number }> {
  return rows.flatMap((row) => {
    const policy = idlePolicy(row);
    const state = activity.get(row.id);
    if (policy === null || (state?.idle_since ?? null) !== null || row.id === promoting) return [];
    if (SETTLING.includes(row.status as DeploymentStatus)) return [];
    return [{ id: row.id, dueAt: (state?.active_at ?? row.created_at) + policy.idleTimeoutMs }];
  });
}
