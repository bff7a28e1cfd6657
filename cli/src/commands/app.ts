import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { checkAppName } from "../deploy-config.ts";
import { deploymentTable } from "../deploy-format.ts";
import { fields, formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["app"],
  summary: "Create, list and inspect apps",
  description:
    "An app is a name (2-32 lowercase letters, digits and dashes; it appears in URLs) with a history of immutable deployments. " +
    "One deployment at a time is promoted: the app's URL serves it. 'zectre deploy' creates the app on its first deploy.",
});

const APP_ARG = { name: "name", required: true, description: "The app's name, e.g. web" } as const;

const create = defineCommand({
  path: ["app", "create"],
  summary: "Create an app (it has no deployments until 'zectre deploy')",
  positionals: [APP_ARG],
  examples: ["zectre app create web", "zectre app create web --format json"],
  async run(ctx) {
    const name = checkAppName(ctx.args.name, ["app", "create"]);
    const result = await ctx.client().createApp(name);
    ctx.out.result(result, () => `Created app ${result.app.name}; deploy it with 'zectre deploy --app ${result.app.name}'`);
  },
});

const list = defineCommand({
  path: ["app", "list"],
  summary: "List the org's apps with their promoted and latest deployments",
  examples: ["zectre app list", "zectre app list --format json"],
  async run(ctx) {
    const result = await ctx.client().listApps();
    ctx.out.result(result, (c) => {
      if (result.apps.length === 0) return "No apps found.";
      const rows = result.apps.map((app) => [app.name, app.promoted ?? "-", app.latest ?? "-", formatTime(app.createdAt, "-")]);
      return table(["NAME", "PROMOTED", "LATEST", "CREATED"], rows, c);
    });
  },
});

const show = defineCommand({
  path: ["app", "show"],
  summary: "Show an app and its newest deployments",
  description: "Lists up to 20 deployments, newest first; 'zectre deployments APP' lists them all. --format json prints the app and the full deployment records.",
  positionals: [APP_ARG],
  examples: ["zectre app show web", "zectre app show web --format yaml"],
  async run(ctx) {
    const name = checkAppName(ctx.args.name, ["app", "show"]);
    const result = await ctx.client().getApp(name);
    ctx.out.result(result, (c) => {
      const { app, deployments } = result;
      const summary = fields(
        [
          ["App", app.name],
          ["Promoted", app.promoted ?? "none"],
          ["Latest", app.latest ?? "none"],
          ["Created", `${formatTime(app.createdAt, "-")} by ${app.createdBy}`],
        ],
        c,
      );
      if (deployments.length === 0) return [...summary, "", `No deployments yet; run 'zectre deploy --app ${app.name}'.`];
      return [...summary, "", ...deploymentTable(deployments, c)];
    });
  },
});

export const appCommands: readonly Entry[] = [group, create, list, show];
