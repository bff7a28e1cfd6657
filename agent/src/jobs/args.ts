import type { JsonObject, JsonValue } from "../../../protocol/json.ts";
import { FunctionError } from "./types.ts";

/**
 * Reading a job's arguments: keyword arguments by name, positional ones under
 * `_` (`zectre run '*' test.echo hello` sends `{"_": ["hello"]}`). A keyword
 * wins over the positional argument at the same place.
 */

export function positional(args: JsonObject): readonly JsonValue[] {
  const list = args._;
  return Array.isArray(list) ? (list as JsonValue[]) : [];
}

/** The keyword `name`, else positional `index`; undefined when neither is given (or it is null). */
export function argument(args: JsonObject, name: string, index?: number): JsonValue | undefined {
  const value = Object.hasOwn(args, name) ? args[name] : index === undefined ? undefined : positional(args)[index];
  return value === null ? undefined : value;
}

/** A scalar as text (a positional `5` may arrive as a number); anything else is a usage error. */
export function scalarText(value: JsonValue, what: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new FunctionError(`${what} must be a string`);
}

export function requiredText(args: JsonObject, fn: string, name: string, index?: number): string {
  const value = argument(args, name, index);
  if (value === undefined) throw new FunctionError(`${fn} needs ${name}${index === undefined ? "" : ` (${name}= or positional argument ${index + 1})`}`);
  return scalarText(value, name);
}

export function optionalText(args: JsonObject, name: string, index?: number): string | undefined {
  const value = argument(args, name, index);
  return value === undefined ? undefined : scalarText(value, name);
}

/** A finite number, also from numeric text (`"1.5"`). */
export function optionalNumber(args: JsonObject, name: string, index?: number): number | undefined {
  const value = argument(args, name, index);
  if (value === undefined) return undefined;
  const number = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : Number.NaN;
  if (!Number.isFinite(number)) throw new FunctionError(`${name} must be a number`);
  return number;
}

/** A non-empty path; relative paths are taken from the agent's working directory, which is not meaningful, so they are refused. */
export function requiredPath(args: JsonObject, fn: string, index = 0): string {
  const path = requiredText(args, fn, "path", index);
  if (path === "") throw new FunctionError(`${fn} needs a non-empty path`);
  if (!path.startsWith("/")) throw new FunctionError(`path must be absolute, got '${path}'`);
  return path;
}

/** Looks up a dotted key: the longest key that exists wins (`log.level` as one key), numeric segments index arrays. */
export function dottedLookup(root: JsonValue, key: string): { found: true; value: JsonValue } | { found: false } {
  const path = key.split(".");
  const walk = (value: JsonValue, from: number): { found: true; value: JsonValue } | { found: false } => {
    if (from === path.length) return { found: true, value };
    if (Array.isArray(value)) {
      const segment = path[from] as string;
      if (!/^\d+$/.test(segment)) return { found: false };
      const index = Number(segment);
      return index < value.length ? walk(value[index] as JsonValue, from + 1) : { found: false };
    }
    if (typeof value !== "object" || value === null) return { found: false };
    const record = value as JsonObject;
    for (let end = path.length; end > from; end--) {
      const candidate = path.slice(from, end).join(".");
      if (Object.hasOwn(record, candidate)) {
        const found = walk(record[candidate] as JsonValue, end);
        if (found.found) return found;
      }
    }
    return { found: false };
  };
  return walk(root, 0);
}
