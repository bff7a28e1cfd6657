import type { Health, Identity, OrgInfo } from "../../../protocol/api.ts";
import { ApiError } from "../client.ts";
import { defineCommand, type Entry } from "../command.ts";
import { describeSources } from "../config.ts";
import { CliError, oneLine } from "../errors.ts";
import { fields } from "../output.ts";

/** What `status` prints in json/yaml: the API's objects as sent, null where a call failed. */
interface StatusReport {
  url: string;
  credentials: { source: string; profile: string | null };
  reachable: boolean;
  healthy: boolean;
  health: Health | null;
  identity: Identity | null;
  org: OrgInfo | null;
  error: { code: string; message: string } | null;
}

const status = defineCommand({
  path: ["status"],
  summary: "Show the server, its health, and who the credentials authenticate as",
  description: "Prints what it learned, then exits 1 if the server cannot be reached, is unhealthy, or rejects the token.",
  async run(ctx) {
    const credentials = ctx.credentials();
    const client = ctx.client(credentials);
    const report: StatusReport = {
      url: credentials.url,
      credentials: { source: describeSources(credentials), profile: credentials.profile ?? null },
      reachable: false,
      healthy: false,
      health: null,
      identity: null,
      org: null,
      error: null,
    };

    let failure: CliError | undefined;
    try {
      report.health = await client.health();
      report.reachable = true;
      report.healthy = report.health.ok === true;
      report.identity = (await client.whoami()).identity;
      // The org is extra detail: failing to get it should not hide the identity.
      report.org = await client.org().then(
        (body) => body.org,
        () => null,
      );
      if (!report.healthy) failure = new CliError(`${credentials.url} answered /healthz but does not report itself healthy`);
    } catch (error) {
      if (!(error instanceof CliError)) throw error;
      // Any HTTP answer, even an error, proves the server is reachable.
      if (error instanceof ApiError) report.reachable = true;
      failure = error;
      report.error = { code: error instanceof ApiError ? error.code : "unreachable", message: error.message };
    }

    ctx.out.result(report, (c) => {
      const problem = report.error ? `${oneLine(report.error.message)}${report.error.code === "unreachable" ? "" : ` (${report.error.code})`}` : "";
      const reachable = report.health
        ? report.healthy
          ? `${c.green("yes")}, healthy (server version ${report.health.version})`
          : `${c.red("yes, but unhealthy")} (server version ${report.health.version})`
        : report.reachable
          ? c.red(`yes, but /healthz failed: ${problem}`)
          : c.red(`no: ${problem}`);
      const identity = report.identity;
      const token = identity
        ? `${identity.tokenName} (id ${identity.tokenId}, scope ${identity.scope})`
        : report.health && report.error
          ? c.red(`rejected: ${problem}`)
          : "unknown";
      const org = identity ? `${identity.org}${report.org ? ` (rate limit ${report.org.rateLimitPerMinute}/min per token)` : ""}` : "unknown";
      return fields(
        [
          ["Server", credentials.url],
          ["Reachable", reachable],
          ["Org", org],
          ["Token", token],
          ["Credentials", report.credentials.source],
        ],
        c,
      );
    });
    if (failure) throw failure;
  },
});

export const statusCommands: readonly Entry[] = [status];
