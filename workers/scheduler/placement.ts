/**
 * Where a deployment's missing replicas go: nodes with room for the request, spread so a
 * deployment's replicas land on different nodes first, then on the least loaded.
 * Pure, so the rules are tested as tables of cases.
 */

export interface CandidateNode {
  id: string;
  cpuCount: number;
  memoryMb: number;
  /** Already reserved on the node by placed tasks (every app of the org). */
  reserved: { tasks: number; cpu: number; memoryMb: number };
  /** Tasks of this deployment already on the node. */
  sameDeployment: number;
}

export interface PlacementRequest {
  count: number;
  cpu: number;
  memoryMb: number;
  /** A deployment with a fixed port cannot run two tasks on one node. */
  onePerNode?: boolean;
}

export interface PlacementResult {
  nodeIds: string[];
  /** Replicas that found no node with room. */
  unplaced: number;
}

function fits(node: CandidateNode, request: PlacementRequest): boolean {
  if (request.onePerNode && node.sameDeployment > 0) return false;
  return node.reserved.cpu + request.cpu <= node.cpuCount + 1e-9 && node.reserved.memoryMb + request.memoryMb <= node.memoryMb;
}

/** Fewer replicas of this deployment first (spread), then fewer tasks, then more free CPU; ids break ties. */
function better(a: CandidateNode, b: CandidateNode): number {
  return (
    a.sameDeployment - b.sameDeployment ||
    a.reserved.tasks - b.reserved.tasks ||
    a.reserved.cpu / a.cpuCount - b.reserved.cpu / b.cpuCount ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

export function placeReplicas(request: PlacementRequest, candidates: readonly CandidateNode[]): PlacementResult {
  const nodes = candidates.map((n) => ({ ...n, reserved: { ...n.reserved } }));
  const nodeIds: string[] = [];
  for (let i = 0; i < request.count; i++) {
    const best = nodes.filter((n) => fits(n, request)).sort(better)[0];
    if (!best) return { nodeIds, unplaced: request.count - i };
    nodeIds.push(best.id);
    best.reserved.tasks++;
    best.reserved.cpu += request.cpu;
    best.reserved.memoryMb += request.memoryMb;
    best.sameDeployment++;
  }
  return { nodeIds, unplaced: 0 };
}
