import { parseDirectAddress } from "../../../protocol/direct.ts";
import { ENROLLMENT_STATES, NodeId } from "../../../protocol/nodes.ts";
import { listWords } from "../args.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { CliError, UsageError } from "../errors.ts";
import { formatLabels, parseLabelChanges } from "../labels.ts";
import { formatAgo, formatValue, serializeJson, table } from "../output.ts";

const group = defineGroup({
  path: ["node"],
  summary: "List and inspect the org's hosts, their facts and labels; enroll new ones",
  description:
    "A node is a host running zectre-agent. Hosts join with an enrollment token ('zectre node token create'), " +
    "wait in the pending state until approved ('zectre node enroll approve'), and report facts once connected.",
});

/** The `--state` value: `all`, or states separated by commas. Checked here so a typo costs no round trip. */
export const STATE_OPTION = {
  type: "string",
  short: "s",
  valueName: "STATE",
  description: `Only nodes in these states, comma-separated (${ENROLLMENT_STATES.join(", ")}), or 'all'`,
} as const;

export function checkStateFilter(state: string, commandPath: readonly string[]): string {
  if (state === "all") return state;
  const states = state.split(",");
  const bad = states.find((one) => !(ENROLLMENT_STATES as readonly string[]).includes(one));
  if (bad !== undefined) {
    throw new UsageError(`invalid --state '${state}': expected 'all' or a comma-separated list of ${listWords(ENROLLMENT_STATES)}`, commandPath);
  }
  return state;
}

export function checkNodeId(id: string, commandPath: readonly string[]): string {
  const parsed = NodeId.safeParse(id);
  if (!parsed.success) throw new UsageError(`invalid node id '${id}': ${parsed.error.issues[0]?.message ?? "bad node id"}`, commandPath);
  return id;
}

const list = defineCommand({
  path: ["node", "list"],
  summary: "List nodes, with whether each is connected and when it was last seen",
  description:
    "Without --state the server lists approved and active nodes; 'zectre node enroll list' shows every state. " +
    "--target takes a target expression, the same one that selects the nodes a job runs on; the server evaluates it.",
  options: {
    target: { type: "string", valueName: "EXPR", description: "Only nodes the target expression selects" },
    state: STATE_OPTION,
  },
  examples: ["zectre node list", "zectre node list -s pending,approved --format json"],
  async run(ctx) {
    const { target } = ctx.options;
    const state = ctx.options.state === undefined ? undefined : checkStateFilter(ctx.options.state, ["node", "list"]);
    const result = await ctx.client().listNodes({ state, target });
    const now = Date.now();
    ctx.out.result(result, (c) => {
      if (result.nodes.length === 0) return state === undefined && target === undefined ? "No approved or active nodes." : "No nodes match.";
      const rows = result.nodes.map((node) => [node.id, node.os ?? "-", node.arch ?? "-", node.online ? "yes" : "no", lastSeenCell(node, now)]);
      // The DIRECT column only appears once some node is direct, so most fleets keep the narrow table.
      if (!result.nodes.some((node) => node.directAddress)) return table(["NODE ID", "OS", "ARCH", "ONLINE", "LAST-SEEN"], rows, c);
      const withDirect = rows.map((row, i) => [...row, result.nodes[i]?.directAddress ?? "-"]);
      return table(["NODE ID", "OS", "ARCH", "ONLINE", "LAST-SEEN", "DIRECT"], withDirect, c);
    });
  },
});

const show = defineCommand({
  path: ["node", "show"],
  summary: "Show everything known about a node as JSON: state, labels, facts and effective settings",
  positionals: [{ name: "id", required: true, description: "The node's id, as 'zectre node list' shows it" }],
  examples: ["zectre node show web-1", "zectre node show web-1 --format yaml"],
  async run(ctx) {
    const id = checkNodeId(ctx.args.id, ["node", "show"]);
    const result = await ctx.client().getNode(id);
    // The detail is a nested document; JSON is the clearest way to read it, even for people.
    ctx.out.result(result, () => serializeJson(result.node));
  },
});

const facts = defineCommand({
  path: ["node", "facts"],
  summary: "Print a node's facts, or the single fact at a dotted key",
  description:
    "Without KEY prints the whole facts object as JSON. With KEY prints the value there: text as is, objects and arrays as JSON. " +
    "Keys descend through objects and array indexes, e.g. 'disk.0.mount' or 'custom.rack'. Exits 1 if the fact is missing.",
  positionals: [
    { name: "id", required: true, description: "The node's id" },
    { name: "key", description: "A dotted path into the facts, e.g. 'os' or 'custom.rack'" },
  ],
  examples: ["zectre node facts web-1", "zectre node facts web-1 memoryBytes", "zectre node facts web-1 disk.0.freeBytes"],
  async run(ctx) {
    const id = checkNodeId(ctx.args.id, ["node", "facts"]);
    const { key } = ctx.args;
    const { node } = await ctx.client().getNode(id);
    if (node.facts === null) throw new CliError(`node '${id}' has not reported any facts yet`);
    const value = key === undefined ? node.facts : lookup(node.facts, key);
    if (value === undefined) throw new CliError(`fact '${key}' not found on node '${id}'`);
    ctx.out.result(value, () => formatValue(value));
  },
});

/**
 * Follows a dotted key. At each level the longest run of segments naming an own
 * key wins, so a custom fact called `app.version` is reachable as `custom.app.version`.
 */
export function lookup(root: unknown, dotted: string): unknown {
  const segments = dotted.split(".");
  let current: unknown = root;
  let index = 0;
  while (index < segments.length) {
    if (typeof current !== "object" || current === null) return undefined;
    let next = -1;
    for (let end = segments.length; end > index; end--) {
      const candidate = segments.slice(index, end).join(".");
      const found = Array.isArray(current) ? /^(0|[1-9]\d*)$/.test(candidate) && Number(candidate) < current.length : Object.hasOwn(current, candidate);
      if (found) {
        current = (current as Record<string, unknown>)[candidate];
        next = end;
        break;
      }
    }
    if (next < 0) return undefined;
    index = next;
  }
  return current;
}

const label = defineCommand({
  path: ["node", "label"],
  summary: "Set or remove a node's labels: KEY=VALUE sets, KEY- removes",
  description: "Labels not named are left alone. Settings and targets can select nodes by label.",
  positionals: [
    { name: "id", required: true, description: "The node's id" },
    { name: "changes", variadic: true, description: "KEY=VALUE to set a label, KEY- to remove one" },
  ],
  examples: ["zectre node label web-1 env=prod role=web", "zectre node label web-1 role-"],
  async run(ctx) {
    const path = ["node", "label"];
    const id = checkNodeId(ctx.args.id, path);
    if (ctx.args.changes.length === 0) throw new UsageError("give at least one label change: KEY=VALUE or KEY-", path);
    const labels = parseLabelChanges(ctx.args.changes, path);
    const result = await ctx.client().setNodeLabels(id, { labels });
    ctx.out.result(result, () => `Labels of node '${result.node.id}': ${formatLabels(result.node.labels, "(none)")}`);
  },
});

const direct = defineCommand({
  path: ["node", "direct"],
  summary: "Let the proxy fetch a node's tasks at an address it can reach, without the tunnel (or --off)",
  description:
    "With --address the edge proxy requests the node's tasks at http://ADDRESS:<task port> itself; a safe request (GET, HEAD, " +
    "OPTIONS) that cannot connect there goes through the agent's tunnel instead. ADDRESS is a host name or IP address only: " +
    "no scheme, no port (each task has its own), no path. The agent must let its tasks listen where the proxy can reach them " +
    "('zectre-agent run --task-bind-address'). --off goes back to the tunnel. Needs an admin token.",
  positionals: [{ name: "id", required: true, description: "The node's id" }],
  options: {
    address: { type: "string", valueName: "ADDRESS", description: "Host name or IP address the proxy reaches the node at" },
    off: { type: "boolean", description: "Reach the node's tasks through its tunnel again" },
  },
  examples: ["zectre node direct web-1 --address 10.0.0.5", "zectre node direct web-1 --address web-1.internal.example", "zectre node direct web-1 --off"],
  async run(ctx) {
    const path = ["node", "direct"];
    const id = checkNodeId(ctx.args.id, path);
    const { address, off } = ctx.options;
    if ((address === undefined) === !off) throw new UsageError("give either --address ADDRESS or --off", path);
    let wanted: string | null = null;
    if (address !== undefined) {
      const parsed = parseDirectAddress(address);
      if (!parsed.ok) throw new UsageError(`invalid --address '${address}': ${parsed.problem}`, path);
      wanted = parsed.address;
    }
    const result = await ctx.client().setNodeDirect(id, { address: wanted });
    const where = result.node.directAddress;
    ctx.out.result(result, () =>
      where === null
        ? `Node '${result.node.id}' is reached through its agent's tunnel.`
        : `Node '${result.node.id}' is direct: the proxy fetches its tasks at ${where}.`,
    );
  },
});

export const nodeCommands: readonly Entry[] = [group, list, show, facts, label, direct];

/**
 * An online node has been seen within its last presence window (three heartbeats), while the
 * directory refreshes an online node's last-seen time only every few minutes: "now" is the truer cell.
 */
function lastSeenCell(node: { online: boolean; lastSeen: string | null }, now: number): string {
  return node.online ? "now" : formatAgo(node.lastSeen, "-", now);
}
