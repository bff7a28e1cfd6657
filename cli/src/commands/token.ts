import { CreateTokenBody, type TokenRecord } from "../../../protocol/api.ts";
import { parseDuration } from "../../../protocol/duration.ts";
import { SCOPES } from "../../../protocol/tokens.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["token"],
  summary: "Create, list and revoke API tokens (needs the admin scope)",
});

const create = defineCommand({
  path: ["token", "create"],
  summary: "Create an API token; it is printed this once and never again",
  options: {
    name: { type: "string", valueName: "NAME", required: true, description: "A label for people, e.g. 'ci-deploy'" },
    scope: { type: "string", valueName: "SCOPE", required: true, choices: SCOPES, description: "What the token may do" },
    ttl: { type: "string", valueName: "DURATION", description: "Lifetime such as 90m, 12h, 30d or 2w (default: never expires)" },
  },
  examples: ["zectre token create --name ci-deploy --scope operate --ttl 30d"],
  async run(ctx) {
    const { name, scope, ttl } = ctx.options;
    let ttlSeconds: number | undefined;
    if (ttl !== undefined) {
      const parsed = parseDuration(ttl);
      if (parsed === null) throw new UsageError(`invalid --ttl '${ttl}': use a number with s, m, h, d or w, e.g. 30d`, ["token", "create"]);
      ttlSeconds = parsed;
    }
    // The protocol's own schema catches bad names and out-of-range lifetimes before a round trip.
    const body = CreateTokenBody.safeParse(ttlSeconds === undefined ? { name, scope } : { name, scope, ttlSeconds });
    if (!body.success) {
      const issue = body.error.issues[0];
      const flag = issue?.path[0] === "ttlSeconds" ? "--ttl" : `--${String(issue?.path[0] ?? "name")}`;
      const message = issue?.path[0] === "ttlSeconds" ? "must be between 1m and 1825d" : (issue?.message ?? "invalid");
      throw new UsageError(`invalid ${flag}: ${message}`, ["token", "create"]);
    }

    const created = await ctx.client().createToken(body.data);
    const { record } = created;
    ctx.out.result(created, (c) => [
      `Created token '${record.name}' (id ${record.id}, scope ${record.scope}, expires ${formatTime(record.expiresAt, "never")}).`,
      "",
      `    ${c.bold(created.token)}`,
      "",
      c.yellow("Store it now: it will not be shown again."),
    ]);
    if (ctx.out.format !== "text") ctx.out.warn("the token above is shown only this once; store it now");
  },
});

const list = defineCommand({
  path: ["token", "list"],
  summary: "List the org's tokens",
  options: {
    all: { type: "boolean", description: "Include revoked tokens" },
  },
  async run(ctx) {
    const all = ctx.options.all;
    const result = await ctx.client().listTokens(all);
    ctx.out.result(result, (c) => {
      if (result.tokens.length === 0) return all ? "No tokens." : "No active tokens (--all includes revoked ones).";
      const headers = ["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST-USED", ...(all ? ["REVOKED"] : [])];
      return table(headers, result.tokens.map((token) => tokenRow(token, all)), c);
    });
  },
});

function tokenRow(token: TokenRecord, withRevoked: boolean): string[] {
  const row = [
    token.id,
    token.name,
    token.scope,
    formatTime(token.createdAt, "-"),
    formatTime(token.expiresAt, "never"),
    formatTime(token.lastUsedAt, "never"),
  ];
  if (withRevoked) row.push(formatTime(token.revokedAt, "-"));
  return row;
}

const revoke = defineCommand({
  path: ["token", "revoke"],
  summary: "Revoke a token by id; requests using it fail from then on",
  positionals: [{ name: "id", required: true, description: "The token's id, as 'zectre token list' shows it" }],
  async run(ctx) {
    const result = await ctx.client().revokeToken(ctx.args.id);
    ctx.out.result(result, () => `Revoked token '${result.token.name}' (id ${result.token.id}).`);
  },
});

export const tokenCommands: readonly Entry[] = [group, create, list, revoke];
