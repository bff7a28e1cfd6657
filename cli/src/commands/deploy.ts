import { resolve } from "node:path";
import { MAX_REPLICAS } from "../../../protocol/deployments.ts";
import { type Command, defineCommand, type Entry } from "../command.ts";
import { CONFIG_FILE, planDeployment, readDeployConfig } from "../deploy-config.ts";
import { prepareArtifacts, type ProgressSink } from "../artifacts.ts";
import { checkDirectory, type PrepareArtifacts, runDeploy } from "../deploy-run.ts";
import type { Io } from "../io.ts";
import { stderrProgress } from "../progress.ts";
import { parseTimeout } from "./run.ts";

const PATH = ["deploy"];
const DEFAULT_TIMEOUT = "120";

/**
 * The command with its artifact step passed in: the real one packs and uploads,
 * tests pass one that returns fixed digests.
 */
export function createDeployCommand(prepare: PrepareArtifacts, progress: (io: Io) => ProgressSink): Command {
  return defineCommand({
    path: PATH,
    summary: "Upload a directory as a new deployment of an app and wait until its tasks are healthy",
    usage:
      "zectre deploy [DIR] [--app NAME] [--command CMD] [--replicas N] [--health-path PATH | --health-tcp] [--cpu CORES] [--memory MB] " +
      "[--constraint EXPR]... [--env NAME=VALUE]... [--runtime process|docker] [--port N] [--min N] [--idle-timeout DURATION] [--promote] " +
      "[--detach] [--timeout SECONDS]",
    description:
      `DIR (default: the current directory) is packed into content-addressed artifacts (the code, and installed dependencies as their own ` +
      `layer, reused while the lockfile is unchanged); only layers the server lacks are uploaded. A deployment is immutable: artifacts, ` +
      `command, port, replicas, minimum, idle timeout, health check, resources, constraints, env and runtime are fixed when it is created ` +
      `('zectre scale' changes the replicas).\n\n` +
      `Defaults come from ${CONFIG_FILE} in DIR when it exists, e.g. {"app": "web", "command": "node server.js", "replicas": 2, ` +
      `"healthCheck": {"type": "http", "path": "/healthz"}, "resources": {"cpu": 0.5, "memoryMb": 256}, "constraints": ["G@role:web"], ` +
      `"env": {"NODE_ENV": "production"}, "runtime": "process", "minReplicas": 0, "idleTimeoutSeconds": 300}. Flags override it: ` +
      `--constraint replaces its list, --env adds to its map. ` +
      `Without either, the app is named after DIR and the command is 'npm start' when package.json has a start script.\n\n` +
      `The app is created on its first deploy, and its first deployment is promoted (served at the app's URL). Later ones get only ` +
      `their preview URL until 'zectre promote', or --promote once healthy.\n\n` +
      `--min N below --replicas lets it scale down: after --idle-timeout (default 5m) without a request through the proxy it runs ` +
      `only N tasks, and the next request brings the rest back. With --min 0 it scales to zero, and that request is held until a ` +
      `task is healthy (or the proxy's wake timeout passes: 503 with Retry-After).\n\n` +
      `Prints the deployment id and preview URL, then each task's state as it changes. Exit codes: 0 every task healthy, 2 not ` +
      `healthy by --timeout (crash-looping, unplaceable or still starting), 1 usage or infrastructure errors or Ctrl-C ` +
      `(which stops waiting, not the deployment). --format json prints one object at the end: deployment, previewUrl, appUrl, layers, result.`,
    options: {
      app: { type: "string", valueName: "NAME", description: `The app (default: "app" in ${CONFIG_FILE}, else DIR's name)` },
      command: { type: "string", valueName: "CMD", description: "What each task runs, with sh -c in the app directory (default: npm start)" },
      replicas: { type: "string", valueName: "N", description: `How many tasks, 0 to ${MAX_REPLICAS} (default: 1)` },
      "health-path": { type: "string", valueName: "PATH", description: "Healthy when an HTTP GET of PATH succeeds (default: /)" },
      "health-tcp": { type: "boolean", description: "Healthy when the port accepts a TCP connection, for servers that are not HTTP" },
      cpu: { type: "string", valueName: "CORES", description: "CPU reserved per task, e.g. 0.5 (default: 0.1)" },
      memory: { type: "string", valueName: "MB", description: "Memory reserved per task in MB (default: 128)" },
      constraint: { type: "string", valueName: "EXPR", multiple: true, description: "A target expression every chosen node must match, e.g. G@role:web" },
      env: { type: "string", valueName: "NAME=VALUE", multiple: true, description: "A variable of this deployment (use 'zectre env set' for secrets)" },
      runtime: { type: "string", valueName: "RUNTIME", choices: ["process", "docker"], description: "How tasks run (default: process)" },
      port: {
        type: "string",
        valueName: "N",
        description: "The port the app listens on, for apps that cannot read $PORT (default: each task gets a free one as $PORT; a fixed port allows one task per node)",
      },
      min: { type: "string", valueName: "N", description: "Tasks kept while idle, 0 to --replicas (default: all; 0 scales to zero)" },
      "idle-timeout": { type: "string", valueName: "DURATION", description: "How long without a request before it scales down to --min, e.g. 90s or 5m (default: 5m)" },
      promote: { type: "boolean", description: "Serve it at the app's URL as soon as it is healthy" },
      detach: { type: "boolean", description: "Exit once the deployment is created, without waiting for its tasks" },
      timeout: { type: "string", valueName: "SECONDS", description: `How long to wait for every task to be healthy, e.g. 120 or 5m (default: ${DEFAULT_TIMEOUT})` },
    },
    positionals: [{ name: "dir", description: "The app's directory (default: the current directory)" }],
    examples: [
      "zectre deploy",
      "zectre deploy ./web --app web --replicas 2 --health-path /healthz",
      "zectre deploy --command 'node server.js' --constraint G@role:web --env NODE_ENV=production",
      "zectre deploy --promote --timeout 5m",
      "zectre deploy --min 0 --idle-timeout 60s",
      "zectre deploy --detach --format json",
    ],
    async run(ctx) {
      const dir = resolve(ctx.io.cwd, ctx.args.dir ?? ".");
      const o = ctx.options;
      const timeoutSeconds = parseTimeout(o.timeout ?? DEFAULT_TIMEOUT, PATH);
      checkDirectory(dir);
      const file = readDeployConfig(dir);
      const plan = planDeployment(
        dir,
        file,
        {
          app: o.app,
          command: o.command,
          replicas: o.replicas,
          healthPath: o["health-path"],
          healthTcp: o["health-tcp"],
          cpu: o.cpu,
          memory: o.memory,
          constraints: o.constraint,
          env: o.env,
          runtime: o.runtime,
          port: o.port,
          promote: o.promote,
          min: o.min,
          idleTimeout: o["idle-timeout"],
        },
        PATH,
      );
      return runDeploy({
        client: ctx.client(),
        io: ctx.io,
        out: ctx.out,
        dir,
        plan,
        prepare,
        progress: progress(ctx.io),
        detach: o.detach,
        timeoutSeconds,
      });
    },
  });
}

export const deployCommands: readonly Entry[] = [createDeployCommand(prepareArtifacts, stderrProgress)];
