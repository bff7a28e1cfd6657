import type { Command, GlobalOptions, OptionSpec, OptionSpecs, RawOptionValues, RawPositionalValues } from "./command.ts";
import { UsageError } from "./errors.ts";
import { FORMATS, type Format } from "./output.ts";
import { type CommandNode, commandsUnder, type Registry } from "./registry.ts";

/** Accepted anywhere on the line, before or after the command words. */
export const GLOBAL_OPTIONS = {
  format: { type: "string", valueName: "FORMAT", choices: FORMATS, description: "Output format (default: text)" },
  url: { type: "string", valueName: "URL", description: "Server URL (overrides ZECTRE_URL and profiles)" },
  token: { type: "string", valueName: "TOKEN", description: "API token (overrides ZECTRE_TOKEN and profiles)" },
  profile: { type: "string", valueName: "NAME", description: "Profile to use (default: ZECTRE_PROFILE, then the current profile)" },
  "no-color": { type: "boolean", description: "Never color the output (NO_COLOR is honored too)" },
  help: { type: "boolean", short: "h", description: "Show help for the command" },
  version: { type: "boolean", description: "Print the CLI version" },
} as const satisfies OptionSpecs;

export type ParsedLine =
  | { readonly kind: "run"; readonly command: Command; readonly globals: GlobalOptions; readonly options: RawOptionValues; readonly args: RawPositionalValues }
  /** `--help`, or a bare group (`zectre`, `zectre token`): the caller decides how to show the node. */
  | { readonly kind: "help"; readonly node: CommandNode; readonly globals: GlobalOptions; readonly explicit: boolean }
  | { readonly kind: "version"; readonly globals: GlobalOptions };

/**
 * Two passes: first find the command words (skipping flags and their values, so
 * `zectre --format json token list` works), then parse the remaining words
 * against the global options plus that command's own.
 */
export function parseCommandLine(argv: readonly string[], registry: Registry): ParsedLine {
  const { node, pathIndices } = locate(argv, registry);
  if (node === registry.root) {
    const expanded = expandShorthand(argv, registry);
    if (expanded) return parseCommandLine(expanded, registry);
  }
  const rest = argv.filter((_, index) => !pathIndices.has(index));
  const specs: OptionSpecs = { ...registry.globalOptions, ...node.command?.options };
  const { values, positionals } = tokenize(rest, specs, node.path);
  const globals = readGlobals(values, node.path);

  if (!node.command) {
    const stray = positionals[0];
    if (stray !== undefined) {
      const words = [...node.path, stray].join(" ");
      const hint = closest(stray, [...node.children.keys()]);
      throw new UsageError(`unknown command '${words}'${hint ? ` (did you mean '${[...node.path, hint].join(" ")}'?)` : ""}`, node.path);
    }
  }
  if (globals.version) return { kind: "version", globals };
  if (globals.help || !node.command) return { kind: "help", node, globals, explicit: globals.help };

  const command = node.command;
  const options: Record<string, string | readonly string[] | boolean | undefined> = {};
  for (const [name, spec] of Object.entries(command.options)) {
    const value = values.get(name);
    if (spec.type === "boolean") {
      options[name] = value === true;
      continue;
    }
    if (value === undefined && spec.required) throw new UsageError(`missing required flag --${name}`, node.path);
    if (spec.multiple) {
      const all = Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
      for (const one of all) checkChoice(name, spec, one, node.path);
      options[name] = all;
      continue;
    }
    if (typeof value === "string") checkChoice(name, spec, value, node.path);
    options[name] = value;
  }

  const args: Record<string, string | readonly string[] | undefined> = {};
  let next = 0;
  for (const spec of command.positionals) {
    if (spec.variadic) {
      args[spec.name] = positionals.slice(next);
      next = positionals.length;
    } else {
      const value = positionals[next];
      if (value === undefined && spec.required) throw new UsageError(`missing argument ${spec.name.toUpperCase()}`, node.path);
      args[spec.name] = value;
      next++;
    }
  }
  const extra = positionals[next];
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`, node.path);
  return { kind: "run", command, globals, options, args };
}

/**
 * `zectre '*' test.ping` is `zectre run '*' test.ping`: when no command word leads
 * the line and the shorthand command accepts its positional words, the command's
 * words are put in front. Anything else stays an unknown command.
 */
function expandShorthand(argv: readonly string[], registry: Registry): readonly string[] | undefined {
  const command = registry.shorthand;
  if (!command) return undefined;
  // Lenient: a bad flag is reported later, against the command the line turned out to be.
  const specs: OptionSpecs = { ...registry.globalOptions, ...command.options };
  const positionals: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index] as string;
    if (word === "--") {
      positionals.push(...argv.slice(index + 1));
      break;
    }
    if (!isFlag(word)) {
      positionals.push(word);
      continue;
    }
    if (!word.includes("=") && lookupFlag(word, specs)?.[1].type === "string") index++;
  }
  const first = positionals[0];
  if (first === undefined || registry.root.children.has(first) || !command.shorthand?.(positionals)) return undefined;
  return [...command.path, ...argv];
}

function locate(argv: readonly string[], registry: Registry): { node: CommandNode; pathIndices: Set<number> } {
  let node = registry.root;
  const pathIndices = new Set<number>();
  for (let index = 0; index < argv.length && !node.command; index++) {
    const word = argv[index] as string;
    if (word === "--") break;
    if (isFlag(word)) {
      // A value-taking flag (of any command below here) swallows the next word,
      // so `--name list` never reads `list` as a command.
      if (!word.includes("=") && takesValue(word, node, registry.globalOptions)) index++;
      continue;
    }
    const child = node.children.get(word);
    if (!child) break;
    node = child;
    pathIndices.add(index);
  }
  return { node, pathIndices };
}

function takesValue(flag: string, node: CommandNode, globalOptions: OptionSpecs): boolean {
  const specs = [globalOptions, ...commandsUnder(node).map((command) => command.options)];
  return specs.some((options) => {
    const found = lookupFlag(flag, options);
    return found !== undefined && found[1].type === "string";
  });
}

/** `-5` and `-0.5` are values (a setting, a number), not flags: no short flag is a digit. */
function isFlag(word: string): boolean {
  return word.startsWith("-") && word !== "-" && !/^-\d/.test(word);
}

function lookupFlag(flag: string, specs: OptionSpecs): [string, OptionSpec] | undefined {
  if (flag.startsWith("--")) {
    const name = flag.slice(2).split("=", 1)[0] as string;
    const spec = specs[name];
    return spec ? [name, spec] : undefined;
  }
  const short = flag.slice(1);
  return Object.entries(specs).find(([, spec]) => spec.short !== undefined && spec.short === short);
}

function tokenize(
  words: readonly string[],
  specs: OptionSpecs,
  commandPath: readonly string[],
): { values: Map<string, string | boolean | string[]>; positionals: string[] } {
  const values = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  for (let index = 0; index < words.length; index++) {
    const word = words[index] as string;
    if (word === "--") {
      positionals.push(...words.slice(index + 1));
      break;
    }
    if (!isFlag(word)) {
      positionals.push(word);
      continue;
    }
    const found = lookupFlag(word, specs);
    const shown = word.split("=", 1)[0] as string;
    if (!found) {
      const hint = word.startsWith("--") ? closest(shown.slice(2), Object.keys(specs)) : undefined;
      throw new UsageError(`unknown flag '${shown}'${hint ? ` (did you mean '--${hint}'?)` : ""}`, commandPath);
    }
    const [name, spec] = found;
    const eq = word.indexOf("=");
    const inline = word.startsWith("--") && eq >= 0 ? word.slice(eq + 1) : undefined;
    if (spec.type === "boolean") {
      if (inline !== undefined) throw new UsageError(`flag --${name} does not take a value`, commandPath);
      values.set(name, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const following = words[index + 1];
      // `--token --format json` is far more likely a forgotten value than a token starting with '-'.
      if (following === undefined || isFlag(following)) {
        throw new UsageError(`flag --${name} needs a value${following === undefined ? "" : ` (write --${name}=VALUE if it starts with '-')`}`, commandPath);
      }
      value = following;
      index++;
    }
    if (spec.multiple) {
      const previous = values.get(name);
      values.set(name, Array.isArray(previous) ? [...previous, value] : [value]);
    } else {
      values.set(name, value);
    }
  }
  return { values, positionals };
}

function readGlobals(values: Map<string, string | boolean | string[]>, commandPath: readonly string[]): GlobalOptions {
  const text = (name: string): string | undefined => {
    const value = values.get(name);
    return typeof value === "string" ? value : undefined;
  };
  const format = text("format") ?? "text";
  checkChoice("format", GLOBAL_OPTIONS.format, format, commandPath);
  return {
    format: format as Format,
    url: text("url"),
    token: text("token"),
    profile: text("profile"),
    noColor: values.get("no-color") === true,
    help: values.get("help") === true,
    version: values.get("version") === true,
  };
}

function checkChoice(name: string, spec: OptionSpec, value: string, commandPath: readonly string[]): void {
  if (spec.choices && !spec.choices.includes(value)) {
    throw new UsageError(`invalid --${name} '${value}': expected ${listWords(spec.choices)}`, commandPath);
  }
}

/** `a, b or c` — for messages that enumerate choices. */
export function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
}

/** The candidate within two edits of `word` (or that it abbreviates), for "did you mean" hints. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = candidate.startsWith(word) && word.length >= 2 ? 1 : editDistance(word, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitute));
    }
    previous = current;
  }
  return previous[b.length] as number;
}
