import { EnrollmentAction, type NodeSummary } from "../../../protocol/nodes.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { oneLine, UsageError } from "../errors.ts";
import { formatTime, table } from "../output.ts";
import { checkNodeId, checkStateFilter, STATE_OPTION } from "./node.ts";

const group = defineGroup({
  path: ["node", "enroll"],
  summary: "Review enrollments: approve or reject pending nodes, revoke enrolled ones",
  description:
    "A host that enrolls with a token that does not auto-approve waits as 'pending'. Approving lets it connect; " +
    "rejecting and revoking are final (the host must enroll again under a new id).",
});

const list = defineCommand({
  path: ["node", "enroll", "list"],
  summary: "List nodes with their enrollment state (every state unless --state narrows it)",
  options: { state: STATE_OPTION },
  examples: ["zectre node enroll list", "zectre node enroll list -s pending"],
  async run(ctx) {
    const state = ctx.options.state === undefined ? "all" : checkStateFilter(ctx.options.state, ["node", "enroll", "list"]);
    const result = await ctx.client().listNodes({ state });
    ctx.out.result(result, (c) => {
      if (result.nodes.length === 0) return state === "all" ? "No nodes have enrolled." : `No nodes in state ${state}.`;
      const rows = result.nodes.map((node) => [node.id, node.state, formatTime(node.enrolledAt, "-"), node.stateReason ?? "-"]);
      return table(["NODE ID", "STATE", "ENROLLED", "REASON"], rows, c);
    });
  },
});

function reasonBody(reason: string | undefined, commandPath: readonly string[]): EnrollmentAction {
  const parsed = EnrollmentAction.safeParse(reason === undefined ? {} : { reason });
  if (!parsed.success) throw new UsageError("invalid --reason: at most 500 characters", commandPath);
  return parsed.data;
}

function describe(node: NodeSummary): string {
  return `node '${node.id}' (now ${node.state}${node.stateReason ? `: ${oneLine(node.stateReason)}` : ""})`;
}

const approve = defineCommand({
  path: ["node", "enroll", "approve"],
  summary: "Approve a pending node, or every pending node with --all-pending",
  usage: "zectre node enroll approve ID | --all-pending",
  options: { "all-pending": { type: "boolean", description: "Approve every node now pending" } },
  positionals: [{ name: "id", description: "The pending node's id" }],
  examples: ["zectre node enroll approve web-1", "zectre node enroll approve --all-pending"],
  async run(ctx) {
    const path = ["node", "enroll", "approve"];
    const { id } = ctx.args;
    const all = ctx.options["all-pending"];
    if (id === undefined && !all) throw new UsageError("give a node ID or --all-pending", path);
    if (id !== undefined && all) throw new UsageError("give either a node ID or --all-pending, not both", path);
    const client = ctx.client();
    if (id !== undefined) {
      const result = await client.nodeAction(checkNodeId(id, path), "approve");
      ctx.out.result(result, () => `Approved ${describe(result.node)}.`);
      return;
    }
    const result = await client.approvePending();
    ctx.out.result(result, () =>
      result.nodes.length === 0
        ? "No nodes were pending."
        : `Approved ${result.nodes.length} pending node${result.nodes.length === 1 ? "" : "s"}: ${result.nodes.map((node) => node.id).join(", ")}.`,
    );
  },
});

const reject = defineCommand({
  path: ["node", "enroll", "reject"],
  summary: "Reject a pending node; it cannot connect, and this is final",
  options: { reason: { type: "string", valueName: "TEXT", description: "Why, kept with the node (up to 500 characters)" } },
  positionals: [{ name: "id", required: true, description: "The pending node's id" }],
  examples: ["zectre node enroll reject web-9 --reason 'unknown host'"],
  async run(ctx) {
    const path = ["node", "enroll", "reject"];
    const id = checkNodeId(ctx.args.id, path);
    const result = await ctx.client().nodeAction(id, "reject", reasonBody(ctx.options.reason, path));
    ctx.out.result(result, () => `Rejected ${describe(result.node)}.`);
  },
});

const revoke = defineCommand({
  path: ["node", "enroll", "revoke"],
  summary: "Revoke an enrolled node: its connection is closed and it may not reconnect",
  options: { reason: { type: "string", valueName: "TEXT", description: "Why, kept with the node (up to 500 characters)" } },
  positionals: [{ name: "id", required: true, description: "The node's id" }],
  examples: ["zectre node enroll revoke web-1 --reason decommissioned"],
  async run(ctx) {
    const path = ["node", "enroll", "revoke"];
    const id = checkNodeId(ctx.args.id, path);
    const result = await ctx.client().nodeAction(id, "revoke", reasonBody(ctx.options.reason, path));
    ctx.out.result(result, () => `Revoked ${describe(result.node)}.`);
  },
});

export const nodeEnrollCommands: readonly Entry[] = [group, list, approve, reject, revoke];
