import type { Command, Entry, OptionSpecs } from "./command.ts";

/** A node of the command tree: a group (has children) or a command (has `command`). */
export interface CommandNode {
  readonly name: string;
  readonly path: readonly string[];
  readonly summary: string;
  readonly description: string | undefined;
  readonly children: Map<string, CommandNode>;
  readonly command: Command | undefined;
}

export interface Registry {
  readonly root: CommandNode;
  readonly globalOptions: OptionSpecs;
  /** The command whose `shorthand` lets a line skip its words, if any. */
  readonly shorthand: Command | undefined;
  /** The node at exactly this path, or undefined. */
  find(path: readonly string[]): CommandNode | undefined;
}

const WORD = /^[a-z][a-z0-9-]*$/;

/**
 * Builds the tree and rejects inconsistent tables up front (a typo in a new
 * group file should fail every test, not surface as a confusing parse later).
 */
export function buildRegistry(entries: readonly Entry[], globalOptions: OptionSpecs, rootSummary: string): Registry {
  const root: CommandNode = { name: "", path: [], summary: rootSummary, description: undefined, children: new Map(), command: undefined };
  const find = (path: readonly string[]): CommandNode | undefined => {
    let node: CommandNode | undefined = root;
    for (const word of path) node = node?.children.get(word);
    return node;
  };

  let shorthand: Command | undefined;
  // Declaration order is help order, so a group must come before its commands.
  for (const entry of entries) {
    const label = entry.path.join(" ");
    const name = entry.path.at(-1);
    if (name === undefined) throw new Error("command table: an entry has an empty path");
    for (const word of entry.path) {
      if (!WORD.test(word)) throw new Error(`command table: '${label}' has an invalid word '${word}'`);
    }
    const parent = find(entry.path.slice(0, -1));
    if (!parent || parent.command) throw new Error(`command table: '${label}' needs a group '${entry.path.slice(0, -1).join(" ")}' declared first`);
    if (parent.children.has(name)) throw new Error(`command table: '${label}' is declared twice`);
    if (entry.kind === "command") {
      checkCommand(entry, globalOptions);
      if (entry.shorthand) {
        if (shorthand) throw new Error(`command table: '${label}' and '${shorthand.path.join(" ")}' both have a shorthand`);
        shorthand = entry;
      }
    }
    parent.children.set(name, {
      name,
      path: entry.path,
      summary: entry.summary,
      description: entry.description,
      children: new Map(),
      command: entry.kind === "command" ? entry : undefined,
    });
  }
  for (const entry of entries) {
    const node = find(entry.path);
    if (entry.kind === "group" && node && node.children.size === 0) {
      throw new Error(`command table: group '${entry.path.join(" ")}' has no commands`);
    }
  }
  return { root, globalOptions, shorthand, find };
}

function checkCommand(command: Command, globalOptions: OptionSpecs): void {
  const label = command.path.join(" ");
  const shorts = new Set(Object.values(globalOptions).flatMap((o) => (o.short ? [o.short] : [])));
  for (const [name, option] of Object.entries(command.options)) {
    if (name in globalOptions) throw new Error(`command table: '${label}' redefines the global option --${name}`);
    if (option.multiple && option.type !== "string") throw new Error(`command table: '${label}': only string options may repeat (--${name})`);
    if (option.short !== undefined) {
      if (shorts.has(option.short)) throw new Error(`command table: '${label}' reuses the short option -${option.short}`);
      shorts.add(option.short);
    }
  }
  command.positionals.forEach((positional, index) => {
    const last = index === command.positionals.length - 1;
    if (positional.variadic && !last) throw new Error(`command table: '${label}': only the last positional may be variadic`);
    const previous = command.positionals[index - 1];
    if (positional.required && previous && !previous.required) {
      throw new Error(`command table: '${label}': a required positional cannot follow an optional one`);
    }
  });
}

/** Every descendant command of a node, depth first, in declaration order. */
export function commandsUnder(node: CommandNode): Command[] {
  if (node.command) return [node.command];
  return [...node.children.values()].flatMap(commandsUnder);
}
