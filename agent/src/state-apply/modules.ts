import type { Stats } from "node:fs";
import { chmod, lstat, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { JsonObject } from "../../../protocol/json.ts";
import { octal, parseMode } from "../jobs/functions/file.ts";
import { errorCode, messageOf } from "../state/files.ts";
import type { CommandRun, CommandRunner } from "./commands.ts";
import { lineDiff } from "./diff.ts";

/**
 * The state modules. Each one checks its parameters up front (`prepare`, which
 * throws `StateError` for an unknown or malformed one) and then brings the host
 * to the declared state (`run`), changing nothing when it already is there and
 * nothing at all in test mode (result null where it would change something).
 */

export class StateError extends Error {
  override readonly name: string = "StateError";
}

export interface Outcome {
  /** true: in the declared state; false: failed; null: test mode, would change. */
  readonly result: boolean | null;
  readonly changed: boolean;
  readonly diff: JsonObject | null;
  readonly comment: string;
}

export type PackageManager = "apt" | "dnf";

export interface ModuleContext {
  readonly test: boolean;
  readonly signal: AbortSignal;
  /** A shell command line (cmd.run and its checks). */
  readonly shell: (command: string, cwd: string | undefined) => Promise<CommandRun>;
  /** An argv (pkg and service states). */
  readonly run: CommandRunner;
  /** apt or dnf, detected once per apply; null when neither is there. */
  readonly packageManager: () => Promise<PackageManager | null>;
}

export interface Prepared {
  /** The `name` parameter, else the state id. */
  readonly name: string;
  run(context: ModuleContext): Promise<Outcome>;
}

export interface StateModule {
  readonly params: readonly string[];
  prepare(params: Params): Prepared;
}

/** A state's parameters, read with type checks. */
export class Params {
  readonly id: string;
  readonly module: string;
  readonly #values: ReadonlyMap<string, unknown>;

  constructor(id: string, module: string, values: ReadonlyMap<string, unknown>) {
    this.id = id;
    this.module = module;
    this.#values = values;
  }

  /** Refuses parameters the module does not know. */
  only(allowed: readonly string[]): void {
    for (const key of this.#values.keys()) {
      if (!allowed.includes(key)) throw new StateError(`unknown parameter '${key}' for ${this.module} (it takes ${allowed.join(", ")}, require)`);
    }
  }

  has(key: string): boolean {
    return this.#values.get(key) !== undefined && this.#values.get(key) !== null;
  }

  raw(key: string): unknown {
    return this.#values.get(key) ?? undefined;
  }

  text(key: string): string | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return undefined;
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    throw new StateError(`${key} must be a string`);
  }

  bool(key: string): boolean | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "boolean") throw new StateError(`${key} must be true or false`);
    return value;
  }

  /** `name`, defaulting to the state id. */
  name(): string {
    const name = this.text("name") ?? this.id;
    if (name === "") throw new StateError("name must not be empty");
    return name;
  }

  /** An absolute path (the `name` of file states, `creates`, `cwd`). */
  path(key: string): string | undefined {
    const value = key === "name" ? this.name() : this.text(key);
    if (value !== undefined && !value.startsWith("/")) throw new StateError(`${key} must be an absolute path, got '${value}'`);
    return value;
  }

  /** One string or a list of strings. */
  texts(key: string): string[] | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return undefined;
    const list = Array.isArray(value) ? (value as unknown[]) : [value];
    if (!list.every((item) => typeof item === "string" && item !== "")) throw new StateError(`${key} must be a string or a list of strings`);
    return list as string[];
  }
}

const ok = (comment: string): Outcome => ({ result: true, changed: false, diff: null, comment });
const fail = (comment: string, diff: JsonObject | null = null, changed = false): Outcome => ({ result: false, changed, diff, comment });
const wouldChange = (comment: string, diff: JsonObject): Outcome => ({ result: null, changed: false, diff, comment });
const changed = (comment: string, diff: JsonObject): Outcome => ({ result: true, changed: true, diff, comment });

/** Stats of a path, or null when it does not exist; `lstat` for the link itself. */
async function statIfExists(path: string, how: typeof stat | typeof lstat): Promise<Stats | null> {
  try {
    return await how(path);
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw error;
  }
}

const lstatOrNull = (path: string) => statIfExists(path, lstat);
const statOrNull = (path: string) => statIfExists(path, stat);

function modeOf(params: Params): number | undefined {
  if (!params.has("mode")) return undefined;
  try {
    return parseMode(params.raw("mode"));
  } catch (error) {
    throw new StateError(messageOf(error));
  }
}

async function parentReady(path: string, makedirs: boolean, test: boolean): Promise<string | null> {
  const parent = dirname(path);
  const info = await statOrNull(parent);
  if (info?.isDirectory()) return null;
  if (info) return `${parent} is not a directory`;
  if (!makedirs) return `parent directory ${parent} does not exist (set makedirs: true to create it)`;
  if (!test) await mkdir(parent, { recursive: true });
  return null;
}

const fileManaged: StateModule = {
  params: ["name", "contents", "mode", "makedirs"],
  prepare(params) {
    params.only(this.params);
    const path = params.path("name") as string;
    const contents = params.text("contents");
    const mode = modeOf(params);
    const makedirs = params.bool("makedirs") ?? false;
    return {
      name: path,
      async run({ test }) {
        const info = await statOrNull(path);
        if (info && !info.isFile()) return fail(`${path} exists and is not a regular file`);
        const diff: JsonObject = {};
        if (!info) {
          const problem = await parentReady(path, makedirs, test);
          if (problem !== null) return fail(problem);
          diff.created = true;
          if (contents !== undefined && contents !== "") diff.contents = lineDiff("", contents, path);
          if (mode !== undefined) diff.mode = { old: null, new: octal(mode) };
          if (test) return wouldChange(`${path} would be created`, diff);
          await writeFile(path, contents ?? "", mode === undefined ? {} : { mode });
          if (mode !== undefined) await chmod(path, mode);
          return changed(`${path} created`, diff);
        }
        const current = contents === undefined ? undefined : await readFile(path);
        const contentDiffers = contents !== undefined && current !== undefined && !current.equals(Buffer.from(contents));
        if (contentDiffers) diff.contents = lineDiff((current as Buffer).toString("utf8"), contents as string, path);
        const oldMode = info.mode & 0o7777;
        if (mode !== undefined && oldMode !== mode) diff.mode = { old: octal(oldMode), new: octal(mode) };
        if (Object.keys(diff).length === 0) return ok(`${path} is in the correct state`);
        const what = Object.keys(diff).join(" and ");
        if (test) return wouldChange(`${path}: ${what} would be updated`, diff);
        if (contentDiffers) await writeFile(path, contents as string);
        if (diff.mode !== undefined) await chmod(path, mode as number);
        return changed(`${path}: ${what} updated`, diff);
      },
    };
  },
};

const fileDirectory: StateModule = {
  params: ["name", "mode", "makedirs"],
  prepare(params) {
    params.only(this.params);
    const path = params.path("name") as string;
    const mode = modeOf(params);
    const makedirs = params.bool("makedirs") ?? false;
    return {
      name: path,
      async run({ test }) {
        const info = await statOrNull(path);
        if (info && !info.isDirectory()) return fail(`${path} exists and is not a directory`);
        if (!info) {
          const diff: JsonObject = { created: true, ...(mode === undefined ? {} : { mode: { old: null, new: octal(mode) } }) };
          const problem = await parentReady(path, makedirs, test);
          if (problem !== null) return fail(problem);
          if (test) return wouldChange(`directory ${path} would be created`, diff);
          await mkdir(path, mode === undefined ? {} : { mode });
          if (mode !== undefined) await chmod(path, mode);
          return changed(`directory ${path} created`, diff);
        }
        const oldMode = info.mode & 0o7777;
        if (mode === undefined || oldMode === mode) return ok(`directory ${path} is in the correct state`);
        const diff: JsonObject = { mode: { old: octal(oldMode), new: octal(mode) } };
        if (test) return wouldChange(`directory ${path}: mode would be updated`, diff);
        await chmod(path, mode);
        return changed(`directory ${path}: mode updated`, diff);
      },
    };
  },
};

const fileAbsent: StateModule = {
  params: ["name"],
  prepare(params) {
    params.only(this.params);
    const path = params.path("name") as string;
    if (path.replace(/\/+$/, "") === "") throw new StateError("refusing to remove /");
    return {
      name: path,
      async run({ test }) {
        const info = await lstatOrNull(path);
        if (!info) return ok(`${path} is absent`);
        const diff: JsonObject = { removed: path };
        if (test) return wouldChange(`${path} would be removed`, diff);
        await rm(path, { recursive: info.isDirectory(), force: true });
        return changed(`${path} removed`, diff);
      },
    };
  },
};

/** A check command of `unless` / `onlyif`; a command that could not run is a failure, not a "no". */
async function check(context: ModuleContext, command: string, cwd: string | undefined): Promise<number> {
  const run = await context.shell(command, cwd);
  if (run.code === null) throw new StateError(`check '${command}' did not finish: ${run.error ?? "killed"}`);
  return run.code;
}

const cmdRun: StateModule = {
  params: ["name", "cwd", "unless", "onlyif", "creates"],
  prepare(params) {
    params.only(this.params);
    const command = params.name();
    const cwd = params.path("cwd");
    const unless = params.texts("unless") ?? [];
    const onlyif = params.texts("onlyif") ?? [];
    const creates = params.texts("creates") ?? [];
    for (const path of creates) if (!path.startsWith("/")) throw new StateError(`creates must be an absolute path, got '${path}'`);
    return {
      name: command,
      async run(context) {
        for (const path of creates) {
          if (await lstatOrNull(path)) return ok(`skipped: ${path} exists (creates)`);
        }
        for (const condition of onlyif) {
          const code = await check(context, condition, cwd);
          if (code !== 0) return ok(`skipped: onlyif '${condition}' exited with ${code}`);
        }
        for (const condition of unless) {
          const code = await check(context, condition, cwd);
          if (code === 0) return ok(`skipped: unless '${condition}' succeeded`);
        }
        if (context.test) return wouldChange(`command would run: ${command}`, { command });
        const run = await context.shell(command, cwd);
        const diff: JsonObject = { retcode: run.code, stdout: run.stdout, stderr: run.stderr };
        if (run.code === 0) return changed(`command ran: ${command}`, diff);
        return fail(run.code === null ? `command did not finish: ${run.error ?? "killed"}` : `command exited with code ${run.code}`, diff, true);
      },
    };
  },
};

/** Package names as the package managers know them; nothing that could pass for an option. */
const PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9.+_:~=-]*$/;

function packagesOf(params: Params): string[] {
  const pkgs = params.texts("pkgs") ?? [params.name()];
  for (const pkg of pkgs) if (!PACKAGE_NAME.test(pkg)) throw new StateError(`'${pkg}' is not a package name`);
  return pkgs;
}

async function isInstalled(context: ModuleContext, manager: PackageManager, pkg: string): Promise<boolean> {
  if (manager === "apt") {
    const run = await context.run(["dpkg-query", "-W", "-f=${Status}", pkg], context.signal);
    return run.code === 0 && run.stdout.includes("install ok installed");
  }
  return (await context.run(["rpm", "-q", pkg], context.signal)).code === 0;
}

function packageCommand(manager: PackageManager, action: "install" | "remove", pkgs: readonly string[]): string[] {
  if (manager === "apt") return ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", action, "-y", "-q", ...pkgs];
  return ["dnf", action, "-y", ...pkgs];
}

const NO_PACKAGE_MANAGER = "no supported package manager: neither apt (dpkg-query) nor dnf (rpm) was found";

function packageModule(action: "install" | "remove"): StateModule {
  const want = action === "install";
  const past = want ? "installed" : "removed";
  return {
    params: ["name", "pkgs"],
    prepare(params) {
      params.only(this.params);
      const pkgs = packagesOf(params);
      return {
        name: params.has("pkgs") ? pkgs.join(",") : params.name(),
        async run(context) {
          const manager = await context.packageManager();
          if (manager === null) return fail(NO_PACKAGE_MANAGER);
          const pending: string[] = [];
          for (const pkg of pkgs) if ((await isInstalled(context, manager, pkg)) !== want) pending.push(pkg);
          if (pending.length === 0) return ok(`all packages are ${past}: ${pkgs.join(", ")}`);
          const diff: JsonObject = { [past]: pending, manager };
          if (context.test) return wouldChange(`would be ${past} (${manager}): ${pending.join(", ")}`, diff);
          const run = await context.run(packageCommand(manager, action, pending), context.signal);
          if (run.code !== 0) {
            const detail = run.code === null ? (run.error ?? "killed") : `exit code ${run.code}`;
            return fail(`${manager} ${action} failed (${detail}): ${(run.stderr || run.stdout).trim().slice(-2000)}`, diff, true);
          }
          const left: string[] = [];
          for (const pkg of pending) if ((await isInstalled(context, manager, pkg)) !== want) left.push(pkg);
          if (left.length > 0) return fail(`${manager} ${action} succeeded but these are still not ${past}: ${left.join(", ")}`, diff, true);
          return changed(`${past} (${manager}): ${pending.join(", ")}`, diff);
        },
      };
    },
  };
}

/** Exit 127 from the runner's shell: the program is not there. */
function missingSystemctl(run: CommandRun): boolean {
  return run.code === 127;
}

function serviceModule(running: boolean): StateModule {
  return {
    params: ["name", "enable"],
    prepare(params) {
      params.only(this.params);
      const name = params.name();
      if (!/^[A-Za-z0-9@_.:\\-]+$/.test(name) || name.startsWith("-")) throw new StateError(`'${name}' is not a systemd unit name`);
      const enable = params.bool("enable");
      return {
        name,
        async run(context) {
          const systemctl = (...args: string[]) => context.run(["systemctl", ...args], context.signal);
          const activeRun = await systemctl("is-active", "--quiet", name);
          if (missingSystemctl(activeRun)) return fail("systemctl not found: service states need systemd");
          const active = activeRun.code === 0;
          const enabled = enable === undefined ? undefined : (await systemctl("is-enabled", "--quiet", name)).code === 0;
          const diff: JsonObject = {};
          if (active !== running) diff.service = { old: active ? "running" : "dead", new: running ? "running" : "dead" };
          if (enable !== undefined && enabled !== enable) diff.enabled = { old: enabled ?? null, new: enable };
          if (Object.keys(diff).length === 0) return ok(`service ${name} is ${running ? "running" : "dead"}${enable === undefined ? "" : enable ? " and enabled" : " and disabled"}`);
          if (context.test) return wouldChange(`service ${name} would be ${Object.keys(diff).map((key) => (key === "service" ? (running ? "started" : "stopped") : enable ? "enabled" : "disabled")).join(" and ")}`, diff);
          const done: string[] = [];
          if (diff.service !== undefined) {
            const run = await systemctl(running ? "start" : "stop", name);
            if (run.code !== 0) return fail(`systemctl ${running ? "start" : "stop"} ${name} failed: ${(run.stderr || run.error || `exit code ${run.code}`).trim()}`);
            done.push(running ? "started" : "stopped");
          }
          if (diff.enabled !== undefined) {
            const run = await systemctl(enable ? "enable" : "disable", name);
            if (run.code !== 0) return fail(`systemctl ${enable ? "enable" : "disable"} ${name} failed: ${(run.stderr || run.error || `exit code ${run.code}`).trim()}`, diff, done.length > 0);
            done.push(enable ? "enabled" : "disabled");
          }
          return changed(`service ${name} ${done.join(" and ")}`, diff);
        },
      };
    },
  };
}

export const STATE_MODULES: ReadonlyMap<string, StateModule> = new Map([
  ["file.managed", fileManaged],
  ["file.directory", fileDirectory],
  ["file.absent", fileAbsent],
  ["cmd.run", cmdRun],
  ["pkg.installed", packageModule("install")],
  ["pkg.removed", packageModule("remove")],
  ["service.running", serviceModule(true)],
  ["service.dead", serviceModule(false)],
]);

/** apt when dpkg-query runs, else dnf when rpm runs, else null. */
export async function detectPackageManager(run: CommandRunner, signal: AbortSignal): Promise<PackageManager | null> {
  if ((await run(["dpkg-query", "--version"], signal)).code === 0) return "apt";
  if ((await run(["rpm", "--version"], signal)).code === 0) return "dnf";
  return null;
}
