import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { matchTarget, parseTarget, type TargetCandidate, TargetParseError } from "../../../protocol/target.ts";
import { errorCode, messageOf } from "../state/files.ts";

/**
 * Reading a state tree: `top.yaml` (target expression → state names) and one
 * YAML file per state (`web.nginx` → `web/nginx.yaml`, or `web/nginx/init.yaml`),
 * each a map of state ids to `{ "<module>.<function>": [ {param: value}, ... ] }`.
 * Anything malformed here is a `TreeError`: nothing runs.
 */

export class TreeError extends Error {
  override readonly name: string = "TreeError";
}

/** `file: motd` (module prefix), `file.managed: motd` (exact module) or plain `motd` (any module). */
export interface Requisite {
  readonly module: string | null;
  readonly ref: string;
}

/** One `<id>` × `<module.function>` of a state file, in declaration order. */
export interface Chunk {
  /** `file.managed:motd`, unique in an apply. */
  readonly key: string;
  readonly id: string;
  readonly module: string;
  /** The state (file) it was declared in. */
  readonly state: string;
  /** Every parameter except `require`, in the order written. */
  readonly params: ReadonlyMap<string, unknown>;
  readonly require: readonly Requisite[];
}

const STATE_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const MODULE_NAME = /^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/;
const MODULE_PREFIX = /^[a-z][a-z0-9_]*$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function readYaml(path: string, what: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new TreeError(`cannot read ${what}: ${messageOf(error)}`);
  }
  try {
    return parse(text, { uniqueKeys: true, maxAliasCount: 100 }) as unknown;
  } catch (error) {
    throw new TreeError(`${what} is not valid YAML: ${messageOf(error)}`);
  }
}

/**
 * The state names `top.yaml` assigns to a node, in order, without repeats. The flat
 * form `{target: [names]}` or Salt's `{base: {target: [names]}}` (only `base` is read).
 */
export async function topStates(tree: string, node: TargetCandidate): Promise<string[]> {
  const top = await readYaml(join(tree, "top.yaml"), "top.yaml");
  if (top === undefined) throw new TreeError(`the state tree ${tree} has no top.yaml`);
  if (top === null) return [];
  if (!isRecord(top)) throw new TreeError("top.yaml must map target expressions to lists of state names");
  let targets: Record<string, unknown> = top;
  const values = Object.values(top);
  if (values.length > 0 && values.every(isRecord)) {
    const base = top.base;
    if (!isRecord(base)) throw new TreeError("top.yaml has environments but no 'base'");
    targets = base;
  }
  const names: string[] = [];
  for (const [text, list] of Object.entries(targets)) {
    if (!Array.isArray(list) || !list.every((name) => typeof name === "string")) {
      throw new TreeError(`top.yaml: target '${text}' must have a list of state names`);
    }
    let matched: boolean;
    try {
      matched = matchTarget(parseTarget(text), node);
    } catch (error) {
      throw new TreeError(`top.yaml: bad target '${text}': ${error instanceof TargetParseError ? error.message : messageOf(error)}`);
    }
    if (!matched) continue;
    for (const name of list as string[]) {
      checkStateName(name, `top.yaml (target '${text}')`);
      if (!names.includes(name)) names.push(name);
    }
  }
  return names;
}

function checkStateName(name: string, where: string): void {
  if (!STATE_NAME.test(name)) throw new TreeError(`${where}: '${name}' is not a state name (letters, digits, _ and -, dot-separated)`);
}

/** Loads the named states (and what they `include`), as chunks in declaration order. */
export async function loadStates(tree: string, names: readonly string[]): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  const seenKeys = new Map<string, string>();
  const visited = new Set<string>();

  const visit = async (name: string, where: string): Promise<void> => {
    checkStateName(name, where);
    if (visited.has(name)) return;
    visited.add(name);
    const segments = name.split(".");
    const file = `${join(...segments)}.yaml`;
    let doc = await readYaml(join(tree, file), file);
    let source = file;
    if (doc === undefined) {
      source = join(...segments, "init.yaml");
      doc = await readYaml(join(tree, source), source);
    }
    if (doc === undefined) throw new TreeError(`state '${name}' not found (no ${file} or ${source} in the tree)`);
    if (doc === null) return;
    if (!isRecord(doc)) throw new TreeError(`${source} must map state ids to modules`);

    if (Object.hasOwn(doc, "include")) {
      const include = doc.include;
      if (!Array.isArray(include) || !include.every((item) => typeof item === "string")) {
        throw new TreeError(`${source}: include must be a list of state names`);
      }
      for (const included of include as string[]) await visit(included, `${source} include`);
    }

    for (const [id, body] of Object.entries(doc)) {
      if (id === "include") continue;
      if (!isRecord(body)) throw new TreeError(`${source}: state '${id}' must map module.function names to parameter lists`);
      for (const [key, value] of Object.entries(body)) {
        const { module, list } = moduleAndList(key, value, `${source}: state '${id}'`);
        const chunkKey = `${module}:${id}`;
        const earlier = seenKeys.get(chunkKey);
        if (earlier !== undefined) throw new TreeError(`state '${id}' (${module}) is declared twice: in ${earlier} and in ${source}`);
        seenKeys.set(chunkKey, source);
        chunks.push({ key: chunkKey, id, module, state: name, ...readParams(list, `${source}: state '${id}' (${module})`) });
      }
    }
  };

  for (const name of names) await visit(name, "requested states");
  return chunks;
}

/** `file.managed: [...]`, or Salt's short form `file: [managed, ...]`; a bare key (`file.absent:`) has no parameters. */
function moduleAndList(key: string, value: unknown, where: string): { module: string; list: unknown[] } {
  const list = value === null ? [] : value;
  if (!Array.isArray(list)) throw new TreeError(`${where}: ${key} must have a list of {parameter: value} maps`);
  if (MODULE_NAME.test(key)) return { module: key, list };
  if (MODULE_PREFIX.test(key)) {
    const functions = list.filter((item) => typeof item === "string");
    if (functions.length === 1) return { module: `${key}.${functions[0] as string}`, list: list.filter((item) => typeof item !== "string") };
  }
  throw new TreeError(`${where}: '${key}' is not a module.function name`);
}

function readParams(list: readonly unknown[], where: string): { params: Map<string, unknown>; require: Requisite[] } {
  const params = new Map<string, unknown>();
  let require: Requisite[] = [];
  for (const item of list) {
    if (!isRecord(item) || Object.keys(item).length !== 1) throw new TreeError(`${where}: each parameter must be a single-key map like {name: value}`);
    const [[param, value]] = Object.entries(item) as [[string, unknown]];
    if (params.has(param) || (param === "require" && require.length > 0)) throw new TreeError(`${where}: parameter '${param}' is given twice`);
    if (param === "require") require = readRequire(value, where);
    else params.set(param, value);
  }
  return { params, require };
}

function readRequire(value: unknown, where: string): Requisite[] {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item): Requisite => {
    if (typeof item === "string" && item !== "") return { module: null, ref: item };
    if (isRecord(item) && Object.keys(item).length === 1) {
      const [[module, ref]] = Object.entries(item) as [[string, unknown]];
      if ((MODULE_NAME.test(module) || MODULE_PREFIX.test(module)) && typeof ref === "string" && ref !== "") return { module, ref };
    }
    throw new TreeError(`${where}: require entries are a state id or {module: id} (e.g. {file: motd}), got ${JSON.stringify(item)}`);
  });
}

/** `file.managed motd` for messages. */
export function requisiteText(requisite: Requisite): string {
  return requisite.module === null ? requisite.ref : `${requisite.module}: ${requisite.ref}`;
}
