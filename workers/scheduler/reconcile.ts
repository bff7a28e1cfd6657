import type { AppPlan } from "../../durable-objects/AppObject.ts";
import { appStub, type ObjectsEnv, orgStub, registryStub } from "../../durable-objects/env.ts";
import type { NodeLoad } from "../../durable-objects/org/apps-index.ts";
import type { DirectoryEntry } from "../../durable-objects/org/node-directory.ts";
import { buildGrains, matchTarget, parseTarget } from "../../protocol/target.ts";
import { type CandidateNode, placeReplicas } from "./placement.ts";

export interface AppReconcileReport {
  placed: number;
  stopped: number;
  lost: number;
  unplaced: number;
}

export type SchedulerObjectsEnv = Pick<ObjectsEnv, "ORG" | "APP" | "REGISTRY">;

const MIB = 1024 * 1024;

/**
 * One pass over one app: tasks on nodes gone past the grace are given up, missing replicas are
 * placed, tasks of deployments nobody wants are stopped. Every step is idempotent, and the app
 * object re-checks each placement against its current state, so overlapping passes are harmless.
 */
export async function reconcileApp(env: SchedulerObjectsEnv, org: string, app: string, lostGraceMs: number): Promise<AppReconcileReport> {
  const report: AppReconcileReport = { placed: 0, stopped: 0, lost: 0, unplaced: 0 };
  const stub = appStub(env as ObjectsEnv, org, app);
  const plan = await stub.plan();
  if (!plan) return report;
  const nodes = await orgStub(env as ObjectsEnv, org).nodeEntries(["approved", "active"]);
  const lostIds = lostTasks(plan, nodes, Date.now() - lostGraceMs);
  if (lostIds.length > 0) {
    await stub.markLost(lostIds, "node offline past the grace period");
    report.lost = lostIds.length;
  }
  const load = await orgStub(env as ObjectsEnv, org).nodeLoad();
  for (const deployment of plan.deployments) {
    const live = deployment.tasks.filter((t) => !lostIds.includes(t.taskId));
    const missing = deployment.replicas - live.length;
    if (missing <= 0) continue;
    const candidates = eligibleNodes(nodes, deployment.constraints, load, live.map((t) => t.nodeId));
    const request = { count: missing, cpu: deployment.cpu, memoryMb: deployment.memoryMb, onePerNode: deployment.port !== null };
    const result = placeReplicas(request, candidates);
    if (result.nodeIds.length > 0) report.placed += (await stub.assignTasks(deployment.id, result.nodeIds)).length;
    if (result.unplaced > 0) {
      report.unplaced += result.unplaced;
      await stub.placementFailed(deployment.id, unplacedMessage(result.unplaced, deployment, candidates.length));
    }
  }
  report.stopped = await stub.stopUnwanted();
  return report;
}

/** Every app of every org (the registry), one at a time: a cron pass is background work. */
export async function reconcileAll(env: SchedulerObjectsEnv, lostGraceMs: number): Promise<AppReconcileReport> {
  const total: AppReconcileReport = { placed: 0, stopped: 0, lost: 0, unplaced: 0 };
  for (const { org, app } of await registryStub(env as ObjectsEnv).apps()) {
    const one = await reconcileApp(env, org, app, lostGraceMs);
    total.placed += one.placed;
    total.stopped += one.stopped;
    total.lost += one.lost;
    total.unplaced += one.unplaced;
  }
  return total;
}

/** Tasks whose node left the directory (revoked, rejected) or has been offline since before `cutoff`. */
function lostTasks(plan: AppPlan, nodes: readonly DirectoryEntry[], cutoff: number): string[] {
  const byId = new Map(nodes.map((n) => [n.summary.id, n.summary]));
  return plan.deployments.flatMap((d) =>
    d.tasks
      .filter((t) => {
        const node = byId.get(t.nodeId);
        if (!node) return true;
        if (node.online) return false;
        const lastSeen = node.lastSeen === null ? 0 : Date.parse(node.lastSeen);
        return lastSeen < cutoff;
      })
      .map((t) => t.taskId),
  );
}

function eligibleNodes(nodes: readonly DirectoryEntry[], constraints: readonly string[], load: readonly NodeLoad[], sameDeploymentNodes: readonly string[]): CandidateNode[] {
  const expressions = constraints.map((c) => parseTarget(c));
  const loadById = new Map(load.map((l) => [l.nodeId, l]));
  return nodes
    .filter((n) => n.summary.online && n.facts !== null)
    .filter((n) => expressions.every((expr) => matchTarget(expr, { id: n.summary.id, grains: buildGrains(n.facts, n.summary.labels) })))
    .map((n) => {
      const reserved = loadById.get(n.summary.id);
      return {
        id: n.summary.id,
        cpuCount: n.facts?.cpuCount ?? 0,
        memoryMb: Math.floor((n.facts?.memoryBytes ?? 0) / MIB),
        reserved: { tasks: reserved?.tasks ?? 0, cpu: reserved?.cpu ?? 0, memoryMb: reserved?.memoryMb ?? 0 },
        sameDeployment: sameDeploymentNodes.filter((id) => id === n.summary.id).length,
      };
    });
}

function unplacedMessage(unplaced: number, deployment: AppPlan["deployments"][number], eligible: number): string {
  const constraint = deployment.constraints.length > 0 ? ` matching ${deployment.constraints.join(" and ")}` : "";
  if (eligible === 0) return `${unplaced} replica(s) waiting: no online node${constraint}`;
  if (deployment.port !== null) return `${unplaced} replica(s) waiting: port ${deployment.port} is fixed, so each needs a node of its own${constraint} with room`;
  return `${unplaced} replica(s) waiting: no online node${constraint} has room for ${deployment.cpu} CPU and ${deployment.memoryMb} MB`;
}
