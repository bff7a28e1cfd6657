import type { DirectoryEntry } from "../../durable-objects/org/node-directory.ts";
import { buildGrains, lazyCandidate, matchTarget, parseTarget, type TargetExpr, TargetParseError } from "../../protocol/target.ts";
import { ApiError } from "./errors.ts";

export function parseTargetOrThrow(text: string): TargetExpr {
  try {
    return parseTarget(text);
  } catch (error) {
    if (error instanceof TargetParseError) {
      const { message, position } = error;
      throw new ApiError("bad_request", `bad target expression: ${message}`, { details: { position: String(position) } });
    }
    throw error;
  }
}

/** Target resolution over directory entries (they carry facts and labels), for previews that show the nodes. */
export function matchEntries(expr: TargetExpr, entries: readonly DirectoryEntry[]): DirectoryEntry[] {
  return entries.filter((e) => matchTarget(expr, lazyCandidate(e.summary.id, () => buildGrains(e.facts, e.summary.labels))));
}
