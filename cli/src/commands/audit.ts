import { parseDuration } from "../../../protocol/duration.ts";
import { AUDIT_LIMIT_MAX, type AuditEntry } from "../../../protocol/events.ts";
import { oneLine } from "../../../lib/network-errors.ts";
import { defineCommand, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { table } from "../output.ts";

const PATH = ["audit"];

const audit = defineCommand({
  path: PATH,
  summary: "List who changed what in the org, newest first",
  description:
    "Every change made through the API is recorded: when, the actor and its token, the action (method and route, " +
    "e.g. POST /apps/:app/deployments), the ids it named, the HTTP status and the caller's address. Changes agents " +
    "make themselves (enrolling, first connect) appear too, with their status shown as '-'. Request bodies are never recorded.",
  options: {
    since: { type: "string", valueName: "WHEN", description: "Only entries from this long ago (10m, 1h, 7d) or since this ISO time" },
    limit: { type: "string", short: "n", valueName: "N", description: `At most N entries, 1 to ${AUDIT_LIMIT_MAX} (default 100)` },
  },
  examples: ["zectre audit", "zectre audit --since 1h", "zectre audit --since 2026-11-23T10:00:00Z -n 500 --format json"],
  async run(ctx) {
    const query = new URLSearchParams();
    if (ctx.options.since !== undefined) query.set("since", checkSince(ctx.options.since));
    if (ctx.options.limit !== undefined) query.set("limit", checkLimit(ctx.options.limit));
    const suffix = query.size > 0 ? `?${query}` : "";
    const result = await ctx.client().request<{ entries: AuditEntry[] }>("GET", `/api/v1/audit${suffix}`);
    ctx.out.result(result, (c) => {
      if (result.entries.length === 0) return "No audit entries.";
      return table(["TIME", "ACTOR", "ACTION", "TARGET", "STATUS", "IP"], result.entries.map(auditRow), c);
    });
  },
});

function checkSince(raw: string): string {
  if (parseDuration(raw) === null && !(/^\d{4}-\d{2}-\d{2}/.test(raw) && !Number.isNaN(Date.parse(raw)))) {
    throw new UsageError(`invalid --since '${raw}': give a duration such as 10m or 1h, or an ISO time such as 2026-11-23T10:00:00Z`, PATH);
  }
  return raw;
}

function checkLimit(raw: string): string {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > AUDIT_LIMIT_MAX) {
    throw new UsageError(`invalid --limit '${raw}': give a whole number from 1 to ${AUDIT_LIMIT_MAX}`, PATH);
  }
  return raw;
}

/** A token's name reads better than its id; the id is in --format json. */
function actorText(entry: AuditEntry): string {
  return entry.tokenName === null ? entry.actor : `${entry.tokenName} (${entry.tokenId ?? "?"})`;
}

export function auditRow(entry: AuditEntry): string[] {
  const at = `${new Date(entry.at).toISOString().slice(0, 19)}Z`;
  return [at, oneLine(actorText(entry)), oneLine(entry.action), oneLine(entry.target) || "-", entry.status === null ? "-" : String(entry.status), entry.ip ?? "-"];
}

export const auditCommands: readonly Entry[] = [audit];
