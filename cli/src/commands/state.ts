import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { MAX_STATE_FILES, MAX_STATE_TREE_BYTES, type PushStatesBody, STATE_FILE_PATTERN } from "../../../protocol/states.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { CliError } from "../errors.ts";
import { fields, formatTime } from "../output.ts";

const group = defineGroup({
  path: ["state"],
  summary: "Push and inspect the state tree that state.apply runs on every node",
  description:
    "A state tree is a directory of YAML state files plus top.yaml (which states apply to which nodes). " +
    "'zectre state push DIR' uploads it whole; every agent receives it through its outbox and caches it, so state.apply also works offline.",
});

export interface CollectedTree {
  readonly files: Record<string, string>;
  readonly bytes: number;
}

/**
 * Every `*.yaml`/`*.yml` under `dir`, by path relative to it (with `/`), dotfiles
 * and dot-directories skipped; each must parse as YAML. Throws a CliError naming
 * the first problem.
 */
export async function collectStateTree(dir: string): Promise<CollectedTree> {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new CliError(`cannot read ${dir}: no such directory`);
  }
  if (!isDir) throw new CliError(`${dir} is not a directory`);

  const paths: string[] = [];
  const walk = (sub: string) => {
    for (const name of readdirSync(join(dir, sub)).sort()) {
      if (name.startsWith(".")) continue;
      const rel = sub === "" ? name : `${sub}/${name}`;
      // stat, not the dirent: a symlinked file or directory counts as what it points to.
      const stats = statSync(join(dir, rel));
      if (stats.isDirectory()) walk(rel);
      else if (stats.isFile() && /\.ya?ml$/.test(name)) paths.push(rel);
    }
  };
  walk("");
  if (paths.length === 0) throw new CliError(`no .yaml or .yml files under ${dir}`);
  if (paths.length > MAX_STATE_FILES) throw new CliError(`${dir} holds ${paths.length} state files; a state tree has at most ${MAX_STATE_FILES}`);

  const { parseDocument } = await import("yaml");
  const files: Record<string, string> = {};
  let bytes = 0;
  for (const path of paths) {
    if (!STATE_FILE_PATTERN.test(path) || path.length > 256) {
      throw new CliError(`state file '${path}' has an unusable name: use letters, digits, '_', '-' and '.' (not first), at most 256 characters`);
    }
    const text = readFileSync(join(dir, path), "utf8");
    const error = parseDocument(text).errors[0];
    if (error) throw new CliError(`state file '${path}' is not valid YAML: ${error.message.split("\n")[0]}`);
    files[path] = text;
    bytes += Buffer.byteLength(text, "utf8");
  }
  if (bytes > MAX_STATE_TREE_BYTES) {
    throw new CliError(`the state tree under ${dir} is ${bytes} bytes; a state tree is at most ${MAX_STATE_TREE_BYTES} bytes (${MAX_STATE_TREE_BYTES / 1024} KiB)`);
  }
  return { files, bytes };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

const push = defineCommand({
  path: ["state", "push"],
  usage: "zectre state push DIR [--dry-run]",
  summary: "Upload a directory of state files as the org's state tree",
  description:
    "Collects every .yaml/.yml file under DIR (subdirectories too; dotfiles and dot-directories are skipped), checks that each parses as YAML " +
    `and that the tree stays within ${MAX_STATE_FILES} files and ${MAX_STATE_TREE_BYTES / 1024} KiB, then replaces the state tree on the server. ` +
    "A file web/nginx.yaml is the state 'web.nginx'; web/init.yaml is the state 'web'.",
  options: { "dry-run": { type: "boolean", description: "Check the tree and print what would be pushed; send nothing" } },
  positionals: [{ name: "dir", required: true, description: "The directory holding top.yaml and the state files" }],
  examples: ["zectre state push ./states", "zectre state push ./states --dry-run", "zectre state push ./states --format json"],
  async run(ctx) {
    const dir = resolve(ctx.io.cwd, ctx.args.dir);
    const tree = await collectStateTree(dir);
    const names = Object.keys(tree.files);
    if (!Object.hasOwn(tree.files, "top.yaml")) {
      ctx.out.warn(`${dir} has no top.yaml: state.apply without state names will have nothing to apply`);
    }
    if (ctx.options["dry-run"]) {
      ctx.out.result({ dryRun: true, files: names, bytes: tree.bytes }, () => [
        `Would push ${plural(names.length, "file")} (${tree.bytes} bytes) from ${dir}; nothing was sent:`,
        ...names.map((name) => `  ${name}`),
      ]);
      return;
    }
    const body: PushStatesBody = { files: tree.files };
    const info = await ctx.client().pushStates(body);
    ctx.out.result(
      info,
      () => `Pushed state tree ${info.version} (${plural(info.files.length, "file")}, ${info.bytes} bytes); agents receive it through their outbox.`,
    );
  },
});

const show = defineCommand({
  path: ["state", "show"],
  summary: "Show the state tree on the server: version, who pushed it and when, and its files",
  examples: ["zectre state show", "zectre state show --format json"],
  async run(ctx) {
    const info = await ctx.client().getStates();
    ctx.out.result(info, (c) => [
      ...fields(
        [
          ["Version", info.version],
          ["Updated", formatTime(info.updatedAt, "-")],
          ["By", info.updatedBy],
          ["Size", `${plural(info.files.length, "file")}, ${info.bytes} bytes`],
        ],
        c,
      ),
      "Files:",
      ...info.files.map((file) => `  ${file}`),
    ]);
  },
});

export const stateCommands: readonly Entry[] = [group, push, show];
