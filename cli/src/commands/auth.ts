import { parseToken } from "../../../protocol/tokens.ts";
import { ApiClient } from "../client.ts";
import { defineCommand, type Entry } from "../command.ts";
import { DEFAULT_PROFILE, normalizeUrl, PROFILE_NAME } from "../config.ts";
import { CliError, UsageError } from "../errors.ts";
import { envValue } from "../io.ts";

const login = defineCommand({
  path: ["login"],
  summary: "Verify a token against a server and save both as the current profile",
  usage: "zectre login --url URL --token TOKEN [--profile NAME]",
  description:
    "Calls GET /api/v1/whoami with the token; only if the server accepts it are the URL and token saved to config.json (mode 0600) " +
    "under --profile (default: ZECTRE_PROFILE, else 'default'), which becomes the current profile.\n" +
    "ZECTRE_URL and ZECTRE_TOKEN stand in for the flags, which keeps the token out of shell history.",
  examples: ["zectre login --url https://zectre-api.example.workers.dev --token zt_acme_...", "zectre login --profile staging --url https://staging.example.com --token zt_..."],
  async run(ctx) {
    const rawUrl = ctx.globals.url ?? envValue(ctx.io.env, "ZECTRE_URL");
    const token = ctx.globals.token ?? envValue(ctx.io.env, "ZECTRE_TOKEN");
    if (rawUrl === undefined || token === undefined) {
      throw new UsageError("login needs --url URL and --token TOKEN (or ZECTRE_URL and ZECTRE_TOKEN)", ["login"]);
    }
    const name = ctx.globals.profile ?? envValue(ctx.io.env, "ZECTRE_PROFILE") ?? DEFAULT_PROFILE;
    if (!PROFILE_NAME.test(name)) {
      throw new UsageError(`invalid profile name '${name}': use up to 64 letters, digits, '.', '_' or '-'`, ["login"]);
    }
    const url = normalizeUrl(rawUrl);

    // Verify before saving: a profile that cannot authenticate is worse than none.
    const who = await new ApiClient({ url, token, ...(ctx.io.fetch ? { fetch: ctx.io.fetch } : {}) }).whoami();
    const config = ctx.config.load();
    config.profiles[name] = { url, token };
    config.current = name;
    ctx.config.save(config);

    const { identity } = who;
    ctx.out.result(who, (c) => [
      `Logged in to ${url} as token '${identity.tokenName}' (org ${c.bold(identity.org)}, scope ${identity.scope}).`,
      `Saved as profile '${name}' in ${ctx.config.file}; it is now the current profile.`,
    ]);
  },
});

const logout = defineCommand({
  path: ["logout"],
  summary: "Remove a saved profile (the current one unless --profile names another)",
  usage: "zectre logout [--profile NAME]",
  description: "Only forgets the token locally; it stays valid on the server until revoked with 'zectre token revoke ID'.",
  async run(ctx) {
    const config = ctx.config.load();
    const name = ctx.globals.profile ?? envValue(ctx.io.env, "ZECTRE_PROFILE") ?? config.current;
    if (name === undefined) throw new CliError("not logged in: there is no current profile");
    const profile = config.profiles[name];
    if (!profile) throw new CliError(`no profile named '${name}' in ${ctx.config.file}`);
    delete config.profiles[name];
    if (config.current === name) delete config.current;
    ctx.config.save(config);

    const tokenId = parseToken(profile.token)?.id;
    ctx.out.result({ profile: name, url: profile.url, removed: true }, () => [
      `Removed profile '${name}' (${profile.url}) from ${ctx.config.file}.`,
      `The token still works on the server; revoke it with 'zectre token revoke ${tokenId ?? "ID"}' if it should not.`,
    ]);
  },
});

export const authCommands: readonly Entry[] = [login, logout];
