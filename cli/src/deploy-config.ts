import { readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import {
  AppName,
  DeploymentId,
  APP_NAME_PATTERN,
  EnvMap,
  EnvName,
  HealthCheck,
  MAX_IDLE_TIMEOUT_SECONDS,
  MAX_REPLICAS,
  RESERVED_ENV,
  Runtime,
} from "../../protocol/deployments.ts";
import { parseDuration } from "../../protocol/duration.ts";
import { parseTarget, TargetParseError } from "../../protocol/target.ts";
import type { CreateDeploymentRequest } from "./client.ts";
import { CliError, UsageError } from "./errors.ts";

/**
 * `zectre.json`: a directory's deployment defaults. Every key is optional and every
 * flag of `zectre deploy` overrides its key, so the file holds what rarely changes.
 */

export const CONFIG_FILE = "zectre.json";

const Constraint = z.string().min(1).max(1024);

/** Mirrors CreateDeploymentBody, but every key is optional and resources may be partial. */
export const DeployConfigFile = z
  .object({
    app: AppName.optional(),
    command: z.string().min(1).max(4096).optional(),
    replicas: z.number().int().min(0).max(MAX_REPLICAS).optional(),
    healthCheck: HealthCheck.optional(),
    resources: z
      .object({ cpu: z.number().min(0.01).max(256).optional(), memoryMb: z.number().int().min(1).max(1_048_576).optional() })
      .strict()
      .optional(),
    constraints: z.array(Constraint).max(16).optional(),
    env: EnvMap.optional(),
    runtime: Runtime.optional(),
    port: z.number().int().min(1024).max(65535).optional(),
    minReplicas: z.number().int().min(0).max(MAX_REPLICAS).optional(),
    idleTimeoutSeconds: z.number().int().min(1).max(MAX_IDLE_TIMEOUT_SECONDS).optional(),
  })
  .strict();
export type DeployConfigFile = z.infer<typeof DeployConfigFile>;

const KNOWN_KEYS = Object.keys(DeployConfigFile.shape);

/** The directory's zectre.json, checked; undefined when there is none. */
export function readDeployConfig(dir: string): DeployConfigFile | undefined {
  const file = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(`cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${file} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const parsed = DeployConfigFile.safeParse(json);
  if (parsed.success) return parsed.data;
  throw new CliError(`${file}: ${describeIssue(parsed.error.issues[0])}`);
}

function describeIssue(issue: z.core.$ZodIssue | undefined): string {
  if (issue === undefined) return "invalid";
  if (issue.code === "unrecognized_keys") {
    const where = issue.path.length > 0 ? ` in '${issue.path.join(".")}'` : "";
    const known = issue.path.length === 0 ? `; known keys: ${KNOWN_KEYS.join(", ")}` : "";
    return `unknown key${issue.keys.length === 1 ? "" : "s"} ${issue.keys.map((key) => `'${key}'`).join(", ")}${where}${known}`;
  }
  const where = issue.path.length > 0 ? `'${issue.path.map(String).join(".")}': ` : "";
  return `${where}${issue.message}`;
}

/** The flags of `zectre deploy` that shape the deployment, as the parser hands them over. */
export interface DeployFlags {
  readonly app: string | undefined;
  readonly command: string | undefined;
  readonly replicas: string | undefined;
  readonly healthPath: string | undefined;
  readonly healthTcp: boolean;
  readonly cpu: string | undefined;
  readonly memory: string | undefined;
  readonly constraints: readonly string[];
  readonly env: readonly string[];
  readonly runtime: "process" | "docker" | undefined;
  readonly port: string | undefined;
  readonly promote: boolean;
  /** `--min`: replicas kept while idle (0: scale to zero). */
  readonly min?: string | undefined;
  /** `--idle-timeout`: 90s, 5m, or seconds. */
  readonly idleTimeout?: string | undefined;
}

/** What to deploy: the app's name and the deployment body, still without its artifacts. */
export interface DeployPlan {
  readonly app: string;
  readonly body: Omit<CreateDeploymentRequest, "artifacts">;
}

/**
 * Flags over zectre.json over defaults. Lists from flags replace the file's
 * (`--constraint`), maps merge key by key (`--env`), and resources merge field by field.
 */
export function planDeployment(dir: string, file: DeployConfigFile | undefined, flags: DeployFlags, commandPath: readonly string[]): DeployPlan {
  const app = resolveAppName(dir, flags.app ?? file?.app, commandPath);
  const body: DeployPlan["body"] = { command: resolveCommand(dir, flags.command ?? file?.command, commandPath) };
  const replicas = flags.replicas === undefined ? file?.replicas : parseReplicas(flags.replicas, commandPath);
  if (replicas !== undefined) body.replicas = replicas;
  const healthCheck = healthFromFlags(flags, commandPath) ?? file?.healthCheck;
  if (healthCheck !== undefined) body.healthCheck = healthCheck;
  const resources = { ...file?.resources, ...resourcesFromFlags(flags, commandPath) };
  if (Object.keys(resources).length > 0) body.resources = resources;
  const constraints = flags.constraints.length > 0 ? flags.constraints : (file?.constraints ?? []);
  for (const expr of constraints) checkConstraint(expr, commandPath);
  if (constraints.length > 0) body.constraints = [...constraints];
  const env = { ...file?.env, ...parseEnvPairs(flags.env, "--env", commandPath) };
  if (Object.keys(env).length > 0) body.env = env;
  const runtime = flags.runtime ?? file?.runtime;
  if (runtime !== undefined) body.runtime = runtime;
  const port = flags.port === undefined ? file?.port : parsePort(flags.port, commandPath);
  if (port !== undefined) body.port = port;
  if (flags.promote) body.promote = true;
  Object.assign(body, idleFromFlags(file, flags, body.replicas ?? 1, commandPath));
  return { app, body };
}

/** `--min` and `--idle-timeout` over their zectre.json keys; a minimum above the replicas is refused here, as the server would. */
function idleFromFlags(file: DeployConfigFile | undefined, flags: DeployFlags, replicas: number, commandPath: readonly string[]) {
  const minReplicas = flags.min === undefined ? file?.minReplicas : parseReplicas(flags.min, commandPath, "--min");
  const idleTimeoutSeconds = flags.idleTimeout === undefined ? file?.idleTimeoutSeconds : parseIdleTimeout(flags.idleTimeout, commandPath);
  if (minReplicas !== undefined && minReplicas > replicas) {
    throw new UsageError(`--min ${minReplicas} is more than the ${replicas} ${replicas === 1 ? "replica" : "replicas"} deployed; give a minimum from 0 to ${replicas}`, commandPath);
  }
  return { ...(minReplicas === undefined ? {} : { minReplicas }), ...(idleTimeoutSeconds === undefined ? {} : { idleTimeoutSeconds }) };
}

function parseIdleTimeout(text: string, commandPath: readonly string[]): number {
  const seconds = parseDuration(text);
  if (seconds === null || seconds < 1 || seconds > MAX_IDLE_TIMEOUT_SECONDS) {
    throw new UsageError(`invalid --idle-timeout '${text}': give seconds (or 90s, 5m, 2h) from 1 to ${MAX_IDLE_TIMEOUT_SECONDS}`, commandPath);
  }
  return seconds;
}

/** A deployment id from the command line; `what` names where it came from (`--deployment`, `DEPLOYMENT`). */
export function checkDeploymentId(id: string, what: string, commandPath: readonly string[]): string {
  const parsed = DeploymentId.safeParse(id);
  if (!parsed.success) throw new UsageError(`invalid ${what} '${id}': ${parsed.error.issues[0]?.message ?? "not a deployment id"}`, commandPath);
  return id;
}

/** An app name from the command line, checked as the server will. */
export function checkAppName(name: string, commandPath: readonly string[]): string {
  if (!APP_NAME_PATTERN.test(name)) throw new UsageError(`invalid app name '${name}': ${appNameRule()}`, commandPath);
  return name;
}

function resolveAppName(dir: string, given: string | undefined, commandPath: readonly string[]): string {
  if (given !== undefined) return checkAppName(given, commandPath);
  const derived = appNameFrom(basename(dir));
  if (derived === undefined) throw new UsageError(`cannot make an app name out of the directory name '${basename(dir)}'; pass --app NAME`, commandPath);
  return derived;
}

function appNameRule(): string {
  return AppName.safeParse("").error?.issues[0]?.message ?? "invalid";
}

/** `My_App.v2` → `my-app-v2`: lowercased, other characters turned into dashes, trimmed to a DNS label. */
export function appNameFrom(text: string): string | undefined {
  const name = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^[^a-z]+/, "")
    .slice(0, 32)
    .replace(/-+$/, "");
  return APP_NAME_PATTERN.test(name) ? name : undefined;
}

function resolveCommand(dir: string, given: string | undefined, commandPath: readonly string[]): string {
  if (given !== undefined) {
    if (given.trim() === "") throw new UsageError("--command is empty", commandPath);
    return given;
  }
  if (hasStartScript(dir)) return "npm start";
  throw new UsageError(`no command to run: ${dir} has no package.json with a "start" script; pass --command CMD or set "command" in ${CONFIG_FILE}`, commandPath);
}

function hasStartScript(dir: string): boolean {
  const file = join(dir, "package.json");
  try {
    if (!statSync(file).isFile()) return false;
  } catch {
    return false;
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new CliError(`${file} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const scripts = typeof json === "object" && json !== null ? (json as { scripts?: unknown }).scripts : undefined;
  return typeof scripts === "object" && scripts !== null && typeof (scripts as { start?: unknown }).start === "string";
}

function parsePort(text: string, commandPath: readonly string[]): number {
  if (!/^\d{4,5}$/.test(text) || Number(text) < 1024 || Number(text) > 65535) {
    throw new UsageError(`invalid --port '${text}': give a port from 1024 to 65535 (or leave it out: tasks get one as $PORT)`, commandPath);
  }
  return Number(text);
}

export function parseReplicas(text: string, commandPath: readonly string[], flag = "--replicas"): number {
  if (!/^\d{1,3}$/.test(text) || Number(text) > MAX_REPLICAS) {
    throw new UsageError(`invalid ${flag} '${text}': give a whole number from 0 to ${MAX_REPLICAS}`, commandPath);
  }
  return Number(text);
}

function healthFromFlags(flags: DeployFlags, commandPath: readonly string[]): DeployPlan["body"]["healthCheck"] {
  if (flags.healthPath !== undefined && flags.healthTcp) throw new UsageError("give either --health-path or --health-tcp, not both", commandPath);
  if (flags.healthTcp) return { type: "tcp" };
  if (flags.healthPath === undefined) return undefined;
  if (!flags.healthPath.startsWith("/") || flags.healthPath.length > 512) {
    throw new UsageError(`invalid --health-path '${flags.healthPath}': give a path starting with '/', e.g. /healthz`, commandPath);
  }
  return { type: "http", path: flags.healthPath };
}

function resourcesFromFlags(flags: DeployFlags, commandPath: readonly string[]): { cpu?: number; memoryMb?: number } {
  const resources: { cpu?: number; memoryMb?: number } = {};
  if (flags.cpu !== undefined) {
    const cpu = Number(flags.cpu);
    if (!/^\d+(\.\d+)?$/.test(flags.cpu) || cpu < 0.01 || cpu > 256) {
      throw new UsageError(`invalid --cpu '${flags.cpu}': give cores from 0.01 to 256, e.g. 0.5`, commandPath);
    }
    resources.cpu = cpu;
  }
  if (flags.memory !== undefined) {
    if (!/^\d{1,7}$/.test(flags.memory) || Number(flags.memory) < 1 || Number(flags.memory) > 1_048_576) {
      throw new UsageError(`invalid --memory '${flags.memory}': give megabytes as a whole number from 1, e.g. 256`, commandPath);
    }
    resources.memoryMb = Number(flags.memory);
  }
  return resources;
}

function checkConstraint(expr: string, commandPath: readonly string[]): void {
  try {
    parseTarget(expr);
  } catch (error) {
    if (!(error instanceof TargetParseError)) throw error;
    throw new UsageError(`invalid constraint '${expr}': ${error.message}`, commandPath);
  }
}

/**
 * `K=V` words into a map: names checked as the server does, and the variables Zectre
 * sets itself refused up front. The value is everything after the first `=`.
 */
export function parseEnvPairs(words: readonly string[], what: string, commandPath: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw new UsageError(`invalid ${what} '${word.slice(0, 64)}': write NAME=VALUE`, commandPath);
    const name = checkEnvName(word.slice(0, eq), commandPath);
    Object.defineProperty(env, name, { value: word.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  return env;
}

export function checkEnvName(name: string, commandPath: readonly string[]): string {
  if (!EnvName.safeParse(name).success) {
    throw new UsageError(`invalid variable name '${name.slice(0, 64)}': use letters, digits and _, not starting with a digit`, commandPath);
  }
  if ((RESERVED_ENV as readonly string[]).includes(name)) {
    throw new UsageError(`${name} is set by Zectre for every task and cannot be overridden (reserved: ${RESERVED_ENV.join(", ")})`, commandPath);
  }
  return name;
}

/**
 * The app a command means when it was given none: the one named in zectre.json in
 * the current directory. Only the file counts, never the directory's name, so a
 * rollback cannot hit an app by accident.
 */
export function appFromConfig(cwd: string, given: string | undefined, commandPath: readonly string[]): string {
  if (given !== undefined) return checkAppName(given, commandPath);
  const app = readDeployConfig(cwd)?.app;
  if (app === undefined) throw new UsageError(`missing argument APP (there is no ${CONFIG_FILE} with an "app" in ${cwd})`, commandPath);
  return app;
}
