import { type PutSettingBody, SettingKey, type SettingRecord, type SettingScope, settingScopeText } from "../../../protocol/nodes.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { CliError, UsageError } from "../errors.ts";
import { parseLabel } from "../labels.ts";
import { fields, formatCell, formatTime, formatValue, table } from "../output.ts";
import { checkNodeId } from "./node.ts";

const group = defineGroup({
  path: ["settings"],
  summary: "Set, read and remove settings for the org, for nodes with a label, or for one node",
  description:
    "A setting is a JSON value under a key, stored at a scope: the whole org (the default), every node with a label (--label KEY=VALUE), " +
    "or one node (--node ID). A node sees the merge of all three: its own value beats a label's, which beats the org's.",
});

const SCOPE_OPTIONS = {
  label: { type: "string", valueName: "KEY=VALUE", description: "The scope of nodes carrying this label" },
  node: { type: "string", valueName: "ID", description: "The scope of one node" },
} as const;

/** The scope the flags name: org when neither is given; both at once is a mistake. */
function scopeOf(options: { label: string | undefined; node: string | undefined }, commandPath: readonly string[]): SettingScope {
  if (options.label !== undefined && options.node !== undefined) {
    throw new UsageError("--label and --node cannot be used together: a setting has one scope", commandPath);
  }
  if (options.label !== undefined) {
    const { key, value } = parseLabel(options.label, "--label", commandPath);
    return { kind: "label", key, value };
  }
  if (options.node !== undefined) return { kind: "node", nodeId: checkNodeId(options.node, commandPath) };
  return { kind: "org" };
}


function describeScope(scope: SettingScope): string {
  switch (scope.kind) {
    case "org":
      return "the org";
    case "label":
      return `nodes labeled ${scope.key}=${scope.value}`;
    case "node":
      return `node '${scope.nodeId}'`;
  }
}

function checkKey(key: string, commandPath: readonly string[]): string {
  const parsed = SettingKey.safeParse(key);
  if (!parsed.success) throw new UsageError(`invalid setting key '${key}': ${parsed.error.issues[0]?.message ?? "bad key"}`, commandPath);
  return key;
}

/** VALUE as JSON when it parses (`42`, `true`, `{"a":1}`, `"quoted"`), else the word itself as a string. */
export function parseSettingValue(text: string): PutSettingBody["value"] {
  try {
    return JSON.parse(text) as PutSettingBody["value"];
  } catch {
    return text;
  }
}

/** A scalar as is; an object or array as compact JSON, to stay on one line. */
function inline(value: unknown): string {
  return typeof value === "object" && value !== null ? JSON.stringify(value) : formatValue(value);
}

const set = defineCommand({
  path: ["settings", "set"],
  usage: "zectre settings set KEY VALUE [--label KEY=VALUE | --node ID]",
  summary: "Set a setting at the org scope, or for a label or a node",
  description: "VALUE is read as JSON when it is valid JSON (42, true, null, [1,2], {\"a\":1}); anything else is stored as a string. Quote it for the shell.",
  options: SCOPE_OPTIONS,
  positionals: [
    { name: "key", required: true, description: "The setting's key: letters, digits and . _ - (max 128)" },
    { name: "value", required: true, description: "The value: JSON, or else plain text" },
  ],
  examples: [
    "zectre settings set log.level debug",
    "zectre settings set max-jobs 4 --label env=prod",
    `zectre settings set limits '{"cpu":2,"memoryMb":512}' --node web-1`,
  ],
  async run(ctx) {
    const path = ["settings", "set"];
    const key = checkKey(ctx.args.key, path);
    const scope = scopeOf(ctx.options, path);
    const value = parseSettingValue(ctx.args.value);
    const result = await ctx.client().putSetting({ scope, key, value });
    ctx.out.result(result, () => `Set ${result.setting.key} = ${inline(result.setting.value)} for ${describeScope(result.setting.scope)}.`);
  },
});

const get = defineCommand({
  path: ["settings", "get"],
  usage: "zectre settings get KEY [--label KEY=VALUE | --node ID]",
  summary: "Print a setting's value; with --node, the value the node ends up with and the scope it came from",
  options: SCOPE_OPTIONS,
  positionals: [{ name: "key", required: true, description: "The setting's key" }],
  examples: ["zectre settings get log.level", "zectre settings get max-jobs --label env=prod", "zectre settings get max-jobs --node web-1"],
  async run(ctx) {
    const path = ["settings", "get"];
    const key = checkKey(ctx.args.key, path);
    const scope = scopeOf(ctx.options, path);
    const client = ctx.client();
    if (scope.kind === "node") {
      const effective = await client.nodeSettings(scope.nodeId);
      if (!Object.hasOwn(effective.settings, key)) throw new CliError(`setting '${key}' does not apply to node '${scope.nodeId}' at any scope`);
      const value = effective.settings[key];
      const source = effective.sources[key] ?? "unknown";
      ctx.out.result({ nodeId: scope.nodeId, key, value, source }, (c) =>
        fields(
          [
            ["Value", inline(value)],
            ["Source", source],
          ],
          c,
        ),
      );
      return;
    }
    const { settings } = await client.listSettings(settingScopeText(scope));
    const setting = settings.find((one) => one.key === key);
    if (!setting) throw new CliError(`setting '${key}' is not set for ${describeScope(scope)}`);
    ctx.out.result({ setting }, () => formatValue(setting.value));
  },
});

const list = defineCommand({
  path: ["settings", "list"],
  usage: "zectre settings list [--label KEY=VALUE | --node ID]",
  summary: "List settings: every scope's, one label's, or (with --node) the merged view a node sees",
  options: SCOPE_OPTIONS,
  examples: ["zectre settings list", "zectre settings list --label env=prod", "zectre settings list --node web-1"],
  async run(ctx) {
    const path = ["settings", "list"];
    const given = ctx.options.label !== undefined || ctx.options.node !== undefined;
    const scope = scopeOf(ctx.options, path);
    const client = ctx.client();
    if (scope.kind === "node") {
      const effective = await client.nodeSettings(scope.nodeId);
      ctx.out.result(effective, (c) => {
        const keys = Object.keys(effective.settings).sort();
        if (keys.length === 0) return `No settings apply to node '${scope.nodeId}'.`;
        const rows = keys.map((key) => [key, formatCell(effective.settings[key]), effective.sources[key] ?? "unknown"]);
        return table(["KEY", "VALUE", "SOURCE"], rows, c);
      });
      return;
    }
    const result = await client.listSettings(given ? settingScopeText(scope) : undefined);
    ctx.out.result(result, (c) => {
      if (result.settings.length === 0) return given ? `No settings for ${describeScope(scope)}.` : "No settings.";
      return table(["SCOPE", "KEY", "VALUE", "UPDATED"], result.settings.map(settingRow), c);
    });
  },
});

function settingRow(setting: SettingRecord): string[] {
  return [settingScopeText(setting.scope), setting.key, formatCell(setting.value), formatTime(setting.updatedAt, "-")];
}

const unset = defineCommand({
  path: ["settings", "unset"],
  usage: "zectre settings unset KEY [--label KEY=VALUE | --node ID]",
  summary: "Remove a setting from a scope (nodes then see the next scope's value, if any)",
  options: SCOPE_OPTIONS,
  positionals: [{ name: "key", required: true, description: "The setting's key" }],
  examples: ["zectre settings unset log.level", "zectre settings unset max-jobs --node web-1"],
  async run(ctx) {
    const path = ["settings", "unset"];
    const key = checkKey(ctx.args.key, path);
    const scope = scopeOf(ctx.options, path);
    const result = await ctx.client().deleteSetting({ scope, key });
    const { deleted } = result;
    ctx.out.result(result, () => `Unset ${deleted.key} for ${describeScope(deleted.scope)} (it was ${inline(deleted.value)}).`);
  },
});

export const settingsCommands: readonly Entry[] = [group, set, get, list, unset];
