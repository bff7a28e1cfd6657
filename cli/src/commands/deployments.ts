import type { DeploymentRecord } from "../../../protocol/deployments.ts";
import type { ApiClient } from "../client.ts";
import { defineCommand, type Entry } from "../command.ts";
import { appFromConfig, CONFIG_FILE, checkAppName, checkDeploymentId, parseReplicas, readDeployConfig } from "../deploy-config.ts";
import { deploymentTable } from "../deploy-format.ts";

const APP_FROM_CONFIG = `The app (default: "app" in ./${CONFIG_FILE})`;

const deployments = defineCommand({
  path: ["deployments"],
  summary: "List deployments, newest first: of one app, or of every app",
  description:
    `Without APP, lists the deployments of the app named in ./${CONFIG_FILE}, or when there is none, of every app. ` +
    "REPLICAS reads healthy/wanted, then the minimum kept while idle for deployments that scale down (STATUS idle: scaled to zero; " +
    "the next request wakes it); PROMOTED marks the deployment the app's URL serves.",
  positionals: [{ name: "app", description: "Only this app's deployments" }],
  examples: ["zectre deployments", "zectre deployments web", "zectre deployments web --format json"],
  async run(ctx) {
    const path = ["deployments"];
    const app = ctx.args.app === undefined ? readDeployConfig(ctx.io.cwd)?.app : checkAppName(ctx.args.app, path);
    const client = ctx.client();
    const result = { deployments: app === undefined ? await everyAppsDeployments(client) : (await client.listDeployments(app)).deployments };
    ctx.out.result(result, (c) => (result.deployments.length === 0 ? "No deployments found." : deploymentTable(result.deployments, c)));
  },
});

/** Newest first across apps, as ids sort by creation time. */
async function everyAppsDeployments(client: ApiClient): Promise<DeploymentRecord[]> {
  const { apps } = await client.listApps();
  const lists = await Promise.all(apps.map(async (app) => (await client.listDeployments(app.name)).deployments));
  return lists.flat().sort((a, b) => (a.createdAt === b.createdAt ? b.id.localeCompare(a.id) : b.createdAt.localeCompare(a.createdAt)));
}

const promote = defineCommand({
  path: ["promote"],
  summary: "Make the app's URL serve this deployment",
  description:
    "Rolling: the URL switches once the deployment is healthy (a deployment scaled to 0 gets one replica first), and only then do the " +
    "old deployment's tasks stop. The app remembers what it served before, so 'zectre rollback' can switch back without an upload.",
  positionals: [{ name: "deployment", required: true, description: "The deployment's id, as 'zectre deploy' printed it" }],
  examples: ["zectre promote d0k3x9ab12"],
  async run(ctx) {
    const id = checkDeploymentId(ctx.args.deployment, "DEPLOYMENT", ["promote"]);
    const result = await ctx.client().promoteDeployment(id);
    ctx.out.result(result, () =>
      result.deployment.promoted
        ? `Promoted ${id}: ${result.appUrl} now serves it`
        : `Promoting ${id}: ${result.appUrl} switches to it once it is healthy`,
    );
  },
});

const rollback = defineCommand({
  path: ["rollback"],
  summary: "Promote the app's previously promoted deployment again (no upload)",
  description: "Fails (409) when the app has had only one promoted deployment.",
  positionals: [{ name: "app", description: APP_FROM_CONFIG }],
  examples: ["zectre rollback web", "zectre rollback"],
  async run(ctx) {
    const app = appFromConfig(ctx.io.cwd, ctx.args.app, ["rollback"]);
    const result = await ctx.client().rollbackApp(app);
    ctx.out.result(result, () =>
      result.deployment.promoted
        ? `Rolled back ${app}: ${result.deployment.id} is promoted again (was ${result.from})`
        : `Rolling back ${app} to ${result.deployment.id} (was ${result.from}): it takes over once it is healthy again`,
    );
  },
});

const scale = defineCommand({
  path: ["scale"],
  summary: "Change how many tasks the app's promoted deployment runs",
  description: "0 stops every task, and the app stops serving until it is scaled up again.",
  positionals: [
    { name: "app", required: true, description: "The app" },
    { name: "replicas", required: true, description: "How many tasks, 0 to 100" },
  ],
  examples: ["zectre scale web 3", "zectre scale web 0"],
  async run(ctx) {
    const path = ["scale"];
    const app = checkAppName(ctx.args.app, path);
    const replicas = parseReplicas(ctx.args.replicas, path, "REPLICAS");
    const result = await ctx.client().scaleApp(app, replicas);
    ctx.out.result(result, () => `Scaled ${app} to ${result.deployment.replicas} ${result.deployment.replicas === 1 ? "replica" : "replicas"} (deployment ${result.deployment.id})`);
  },
});

export const deploymentCommands: readonly Entry[] = [deployments, promote, rollback, scale];
