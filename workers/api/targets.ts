import { parseTarget, type TargetExpr, TargetParseError } from "../../protocol/target.ts";
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
