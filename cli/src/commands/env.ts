import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { checkAppName, checkEnvName, parseEnvPairs } from "../deploy-config.ts";
import { formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["env"],
  summary: "Set, unset and list an app's environment variables and secrets",
  description:
    "An app's variables reach every task it starts from then on (a running task keeps the values it started with), merged with the " +
    "deployment's own --env values, which win. Secrets are encrypted at rest and never printed back unless 'env list --reveal' asks " +
    "(admin scope).",
});

const MASK = "••••••";
const APP_ARG = { name: "app", required: true, description: "The app" } as const;

const set = defineCommand({
  path: ["env", "set"],
  summary: "Set one or more variables of an app",
  description:
    "Each NAME=VALUE sets one variable; the value is everything after the first '='. With --secret they are stored encrypted and " +
    "shown masked. The values are never printed back. Note that values on a command line may stay in your shell's history.",
  options: { secret: { type: "boolean", description: "Store the values as secrets" } },
  positionals: [APP_ARG, { name: "pairs", variadic: true, description: "NAME=VALUE, one or more" }],
  examples: ["zectre env set web NODE_ENV=production LOG_LEVEL=info", "zectre env set web DATABASE_URL=postgres://... --secret"],
  async run(ctx) {
    const path = ["env", "set"];
    const app = checkAppName(ctx.args.app, path);
    if (ctx.args.pairs.length === 0) throw new UsageError("missing NAME=VALUE: give at least one variable to set", path);
    const pairs = Object.entries(parseEnvPairs(ctx.args.pairs, "NAME=VALUE", path));
    const client = ctx.client();
    const secret = ctx.options.secret;
    const set: { name: string; secret: boolean }[] = [];
    // One request per variable, in order: a failure names the variable it stopped at, and the earlier ones stay set.
    for (const [name, value] of pairs) set.push(await client.setEnv(app, name, value, secret));
    ctx.out.result({ app, set }, () => `Set ${set.map((one) => one.name).join(", ")} on ${app}${secret ? " (secret)" : ""}`);
  },
});

const unset = defineCommand({
  path: ["env", "unset"],
  summary: "Remove variables from an app",
  positionals: [APP_ARG, { name: "names", variadic: true, description: "The variables' names, one or more" }],
  examples: ["zectre env unset web LOG_LEVEL", "zectre env unset web A B"],
  async run(ctx) {
    const path = ["env", "unset"];
    const app = checkAppName(ctx.args.app, path);
    if (ctx.args.names.length === 0) throw new UsageError("missing NAME: give at least one variable to remove", path);
    const names = [...new Set(ctx.args.names.map((name) => checkEnvName(name, path)))];
    const client = ctx.client();
    const removed: string[] = [];
    for (const name of names) removed.push((await client.unsetEnv(app, name)).name);
    ctx.out.result({ app, removed }, () => `Removed ${removed.join(", ")} from ${app}`);
  },
});

const list = defineCommand({
  path: ["env", "list"],
  summary: "List an app's variables; secrets are masked unless --reveal",
  options: { reveal: { type: "boolean", description: "Show secret values too (needs an admin token)" } },
  positionals: [APP_ARG],
  examples: ["zectre env list web", "zectre env list web --reveal", "zectre env list web --format json"],
  async run(ctx) {
    const app = checkAppName(ctx.args.app, ["env", "list"]);
    const reveal = ctx.options.reveal;
    const answer = await ctx.client().listEnv(app, reveal);
    // Masked here too, so a server that answers with a value it should not have sent still never shows it.
    const result = { env: answer.env.map((one) => (one.secret && !reveal ? { ...one, value: null } : one)) };
    ctx.out.result(result, (c) => {
      if (result.env.length === 0) return `No variables set on ${app}.`;
      const rows = result.env.map((one) => [one.name, one.value ?? MASK, one.secret ? "yes" : "-", formatTime(one.updatedAt, "-")]);
      return table(["NAME", "VALUE", "SECRET", "UPDATED"], rows, c);
    });
  },
});

export const envCommands: readonly Entry[] = [group, set, list, unset];
