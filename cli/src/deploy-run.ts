import { statSync } from "node:fs";
import type { LayerOutcome, PreparedArtifacts, ProgressSink } from "./artifacts.ts";
import { type ApiClient, ApiError, type DeploymentWithUrls } from "./client.ts";
import { CliError } from "./errors.ts";
import type { Io } from "./io.ts";
import { makeColors, type Output } from "./output.ts";
import type { DeployPlan } from "./deploy-config.ts";
import { formatBytes, taskLine } from "./deploy-format.ts";
import { watchDeployment, type WatchResult } from "./deploy-watch.ts";

/**
 * `zectre deploy` after its flags are read: make sure the app exists, upload the
 * artifacts, create the deployment, then follow its tasks until they are healthy.
 */

/** The artifact step: cli/src/artifacts.ts's prepareArtifacts, or a fake in tests. */
export type PrepareArtifacts = (dir: string, client: ApiClient, progress: ProgressSink) => Promise<PreparedArtifacts>;

export interface DeployRun {
  readonly client: ApiClient;
  readonly io: Io;
  readonly out: Output;
  readonly dir: string;
  readonly plan: DeployPlan;
  readonly prepare: PrepareArtifacts;
  readonly progress: ProgressSink;
  readonly detach: boolean;
  readonly timeoutSeconds: number;
}

/** Exit codes: 0 healthy (or created, with --detach), 2 not healthy by the deadline, 1 interrupted or any error. */
export async function runDeploy(run: DeployRun): Promise<number> {
  const { client, out, plan } = run;
  const text = out.format === "text";
  // People read progress; in json/yaml it goes to stderr so stdout holds only the result.
  const say = (line: string) => (text ? run.io.stdout : run.io.stderr).write(`${line}\n`);

  await ensureApp(client, plan.app, say);
  const prepared = await run.prepare(run.dir, client, run.progress);
  for (const layer of prepared.layers) say(layerLine(layer));

  // Opened before the deployment exists, so not one of its events can slip past.
  const controller = new AbortController();
  const stream = run.detach ? undefined : await client.appEvents(plan.app, undefined, controller.signal);
  try {
    const created = await client.createDeployment(plan.app, { ...plan.body, artifacts: prepared.refs });
    const id = created.deployment.id;
    say(`Deployment ${id}`);
    say(`Preview: ${created.previewUrl}`);
    if (!stream) {
      printResult(out, created, prepared, "created");
      return 0;
    }
    const replicas = created.deployment.replicas;
    say(`Waiting for ${replicas} ${replicas === 1 ? "task" : "tasks"} to become healthy (up to ${run.timeoutSeconds}s)`);
    const watched = await watchDeployment({
      client,
      io: run.io,
      colors: text ? out.colors : makeColors(false),
      app: plan.app,
      deploymentId: id,
      replicas,
      timeoutSeconds: run.timeoutSeconds,
      stream,
      controller,
      say,
    });
    return await finish(run, created, prepared, watched, say);
  } finally {
    controller.abort();
  }
}

export function checkDirectory(dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new CliError(`cannot read ${dir}: no such directory`);
  }
  if (!isDir) throw new CliError(`${dir} is not a directory; give the directory of the app to deploy`);
}

/** Creates the app on first deploy; one created meanwhile by someone else is just as good. */
async function ensureApp(client: ApiClient, app: string, say: (line: string) => void): Promise<void> {
  try {
    await client.getApp(app);
    return;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  say(`Creating app ${app}`);
  try {
    await client.createApp(app);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "conflict")) throw error;
  }
}

/** `  app   3f2a1b9c0d1e  12 files, 4.1 KiB  uploaded`; a layer reused by its lockfile was not packed, so its files go uncounted. */
export function layerLine(layer: LayerOutcome): string {
  const how = layer.uploaded ? "uploaded" : layer.reusedBy === "lockfile" ? "reused (lockfile unchanged)" : "already stored";
  const files = layer.reusedBy === "lockfile" ? "" : `${layer.files} ${layer.files === 1 ? "file" : "files"}, `;
  return `  ${layer.layer.padEnd(4)}  ${layer.digest.slice(0, 12)}  ${files}${formatBytes(layer.size)}  ${how}`;
}

type DeployResult = "created" | "healthy" | "timeout";

function printResult(out: Output, deployed: DeploymentWithUrls, prepared: PreparedArtifacts, result: DeployResult): void {
  const { deployment, previewUrl, appUrl } = deployed;
  out.result({ deployment, previewUrl, appUrl, layers: prepared.layers, result }, () => "");
}

async function finish(run: DeployRun, created: DeploymentWithUrls, prepared: PreparedArtifacts, watched: WatchResult, say: (line: string) => void): Promise<number> {
  const id = created.deployment.id;
  if (watched.outcome === "interrupted") {
    run.io.stderr.write(`\nzectre: stopped following deployment ${id}; it keeps deploying.\n  check on it:  zectre deployments ${run.plan.app}\n`);
    return 1;
  }
  // The record as it is now: whether it got promoted, and the tasks for json output.
  const latest = await run.client.getDeployment(id);
  if (watched.outcome === "timeout") {
    printResult(run.out, latest, prepared, "timeout");
    run.io.stderr.write(`zectre: ${notHealthyLine(id, run.timeoutSeconds, latest, watched)}\n`);
    return 2;
  }
  printResult(run.out, latest, prepared, "healthy");
  say(run.out.colors.green(`Deployment ${id} is healthy`));
  if (latest.deployment.promoted) say(`Promoted: ${latest.appUrl} serves it`);
  else say(`Not promoted: 'zectre promote ${id}' makes ${latest.appUrl} serve it`);
  return 0;
}

/** One line that says what is wrong: how many tasks are healthy, and the state of each other one. */
export function notHealthyLine(id: string, timeoutSeconds: number, latest: DeploymentWithUrls, watched: WatchResult): string {
  const wanted = latest.deployment.replicas;
  const healthy = watched.board.healthy();
  const others = watched.board.unhealthy().map((task) => taskLine(task, makeColors(false)));
  const parts = [`${healthy} of ${wanted} ${wanted === 1 ? "task" : "tasks"} healthy`, ...others];
  if (watched.placement !== null) parts.push(`cannot place: ${watched.placement}`);
  return `deployment ${id} is not healthy after ${timeoutSeconds}s: ${parts.join("; ")}`;
}
