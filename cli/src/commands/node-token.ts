import { parseDuration } from "../../../protocol/duration.ts";
import { CreateEnrollmentTokenBody, type EnrollmentTokenRecord } from "../../../protocol/nodes.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatLabels, parseLabels } from "../labels.ts";
import { formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["node", "token"],
  summary: "Create, list and revoke enrollment tokens, which let hosts join the org",
  description: "An enrollment token is only good for enrolling nodes (with 'zectre-agent enroll'); it is not an API token.",
});

const create = defineCommand({
  path: ["node", "token", "create"],
  summary: "Create an enrollment token; it is printed this once and never again",
  options: {
    uses: { type: "string", valueName: "N", description: "How many hosts may enroll with it (default: 1)" },
    ttl: { type: "string", valueName: "DURATION", description: "Lifetime such as 30m, 1h or 7d, from 1m to 365d (default: 1h)" },
    "auto-approve": { type: "boolean", description: "Approve the nodes it enrolls at once instead of leaving them pending" },
    label: { type: "string", valueName: "KEY=VALUE", multiple: true, description: "A label every node enrolled with it starts with" },
  },
  examples: [
    "zectre node token create",
    "zectre node token create --uses 20 --ttl 1d --auto-approve --label env=prod --label role=web",
  ],
  async run(ctx) {
    const path = ["node", "token", "create"];
    const { uses, ttl, label } = ctx.options;
    const body: Partial<CreateEnrollmentTokenBody> = {};
    if (uses !== undefined) {
      if (!/^\d{1,9}$/.test(uses)) throw new UsageError(`invalid --uses '${uses}': give a whole number from 1 to 100000`, path);
      body.uses = Number(uses);
    }
    if (ttl !== undefined) {
      const seconds = parseDuration(ttl);
      if (seconds === null) throw new UsageError(`invalid --ttl '${ttl}': use a number with s, m, h, d or w, e.g. 1h`, path);
      body.ttlSeconds = seconds;
    }
    if (ctx.options["auto-approve"]) body.autoApprove = true;
    if (label.length > 0) body.labels = parseLabels(label, "--label", path);
    // The protocol's schema catches out-of-range values before a round trip.
    const checked = CreateEnrollmentTokenBody.safeParse(body);
    if (!checked.success) {
      const field = checked.error.issues[0]?.path[0];
      if (field === "uses") throw new UsageError(`invalid --uses '${uses}': give a whole number from 1 to 100000`, path);
      if (field === "ttlSeconds") throw new UsageError(`invalid --ttl '${ttl}': must be between 1m and 365d`, path);
      throw new UsageError(`invalid flags: ${checked.error.issues[0]?.message ?? "rejected by the schema"}`, path);
    }

    const client = ctx.client();
    const created = await client.createEnrollmentToken(body);
    const { record } = created;
    const agentCommand = `zectre-agent enroll --url ${client.url} --token ${created.token}`;
    ctx.out.result(created, (c) => [
      `Created enrollment token ${record.id} (${describeToken(record)}).`,
      "",
      `    ${c.bold(created.token)}`,
      "",
      c.yellow("Store it now: it will not be shown again."),
      "Enroll a host by running this on it:",
      "",
      `    ${agentCommand}`,
    ]);
    if (ctx.out.format !== "text") ctx.out.warn("the token above is shown only this once; store it now");
  },
});

function describeToken(record: EnrollmentTokenRecord): string {
  const parts = [
    `${record.uses} use${record.uses === 1 ? "" : "s"}`,
    `expires ${formatTime(record.expiresAt, "never")}`,
    record.autoApprove ? "auto-approve" : "nodes wait for approval",
  ];
  if (Object.keys(record.labels).length > 0) parts.push(`labels ${formatLabels(record.labels)}`);
  return parts.join(", ");
}

const list = defineCommand({
  path: ["node", "token", "list"],
  summary: "List the org's enrollment tokens",
  options: { all: { type: "boolean", description: "Include revoked tokens" } },
  examples: ["zectre node token list", "zectre node token list --all --format json"],
  async run(ctx) {
    const all = ctx.options.all;
    const result = await ctx.client().listEnrollmentTokens(all);
    ctx.out.result(result, (c) => {
      if (result.tokens.length === 0) return all ? "No enrollment tokens." : "No active enrollment tokens (--all includes revoked ones).";
      const headers = ["ID", "USES-LEFT", "AUTO-APPROVE", "LABELS", "CREATED", "EXPIRES", ...(all ? ["REVOKED"] : [])];
      const rows = result.tokens.map((token) => {
        const row = [
          token.id,
          `${token.usesLeft}/${token.uses}`,
          token.autoApprove ? "yes" : "no",
          formatLabels(token.labels),
          formatTime(token.createdAt, "-"),
          formatTime(token.expiresAt, "never"),
        ];
        if (all) row.push(formatTime(token.revokedAt, "-"));
        return row;
      });
      return table(headers, rows, c);
    });
  },
});

const revoke = defineCommand({
  path: ["node", "token", "revoke"],
  summary: "Revoke an enrollment token; hosts can no longer enroll with it",
  positionals: [{ name: "id", required: true, description: "The token's id, as 'zectre node token list' shows it" }],
  examples: ["zectre node token revoke 0123456789abcdef"],
  async run(ctx) {
    const result = await ctx.client().revokeEnrollmentToken(ctx.args.id);
    ctx.out.result(result, () => `Revoked enrollment token ${result.token.id}.`);
  },
});

export const nodeTokenCommands: readonly Entry[] = [group, create, list, revoke];
