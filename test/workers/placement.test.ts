import { describe, expect, it } from "vitest";
import { type CandidateNode, placeReplicas } from "../../workers/scheduler/placement.ts";

const node = (id: string, cpuCount: number, memoryMb: number, reserved: Partial<CandidateNode["reserved"]> = {}, sameDeployment = 0): CandidateNode => ({
  id,
  cpuCount,
  memoryMb,
  reserved: { tasks: 0, cpu: 0, memoryMb: 0, ...reserved },
  sameDeployment,
});

describe("placeReplicas", () => {
  const cases: Array<{ name: string; count: number; cpu: number; memoryMb: number; nodes: CandidateNode[]; expected: string[]; unplaced: number; onePerNode?: boolean }> = [
    { name: "one replica goes to the least loaded node", count: 1, cpu: 0.5, memoryMb: 128, nodes: [node("a", 2, 1024, { tasks: 2, cpu: 1 }), node("b", 2, 1024)], expected: ["b"], unplaced: 0 },
    { name: "replicas spread across nodes before doubling up", count: 3, cpu: 0.1, memoryMb: 64, nodes: [node("a", 4, 4096), node("b", 4, 4096)], expected: ["a", "b", "a"], unplaced: 0 },
    { name: "a node already running the deployment is used last", count: 1, cpu: 0.1, memoryMb: 64, nodes: [node("a", 4, 4096, {}, 1), node("b", 4, 4096, { tasks: 3 })], expected: ["b"], unplaced: 0 },
    { name: "CPU room is respected", count: 2, cpu: 1.5, memoryMb: 64, nodes: [node("a", 2, 4096), node("b", 1, 4096)], expected: ["a"], unplaced: 1 },
    { name: "memory room is respected, counting what is reserved", count: 1, cpu: 0.1, memoryMb: 512, nodes: [node("a", 8, 1024, { memoryMb: 600 })], expected: [], unplaced: 1 },
    { name: "no candidates places nothing", count: 2, cpu: 0.1, memoryMb: 64, nodes: [], expected: [], unplaced: 2 },
    { name: "an exact fit is allowed", count: 2, cpu: 1, memoryMb: 512, nodes: [node("a", 2, 1024)], expected: ["a", "a"], unplaced: 0 },
    { name: "a fixed port allows one task of the deployment per node", count: 3, cpu: 0.1, memoryMb: 64, nodes: [node("a", 4, 4096, {}, 1), node("b", 4, 4096), node("c", 4, 4096)], expected: ["b", "c"], unplaced: 1, onePerNode: true },
    { name: "ties break by node id", count: 1, cpu: 0.1, memoryMb: 64, nodes: [node("b", 2, 1024), node("a", 2, 1024)], expected: ["a"], unplaced: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = placeReplicas({ count: c.count, cpu: c.cpu, memoryMb: c.memoryMb, onePerNode: c.onePerNode ?? false }, c.nodes);
      expect(result).toEqual({ nodeIds: c.expected, unplaced: c.unplaced });
    });
  }

  it("does not change the candidates it was given", () => {
    const nodes = [node("a", 2, 1024)];
    placeReplicas({ count: 2, cpu: 0.5, memoryMb: 64 }, nodes);
    expect(nodes[0]?.reserved).toEqual({ tasks: 0, cpu: 0, memoryMb: 0 });
  });
});
