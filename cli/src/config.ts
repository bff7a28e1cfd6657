import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { CliError } from "./errors.ts";
import { envValue, type Io } from "./io.ts";

export interface Profile {
  url: string;
  token: string;
}

export interface ConfigFile {
  current?: string;
  profiles: Record<string, Profile>;
}

const ConfigSchema = z.object({
  current: z.string().optional(),
  profiles: z.record(z.string(), z.object({ url: z.string(), token: z.string() })).default({}),
});

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const DEFAULT_PROFILE = "default";
export const DEV_DEFAULT_URL = "http://localhost:47080";

export const NO_CREDENTIALS =
  "no credentials: run 'zectre login --url URL --token TOKEN' or start a local server with 'npm run dev'";

export function configDir(env: Io["env"]): string {
  const explicit = envValue(env, "ZECTRE_CONFIG_DIR");
  if (explicit) return explicit;
  const xdg = envValue(env, "XDG_CONFIG_HOME");
  return join(xdg ?? join(envValue(env, "HOME") ?? homedir(), ".config"), "zectre");
}

/** `config.json`: it holds tokens, so only its owner may read it (file 0600, directory 0700). */
export class ConfigStore {
  readonly dir: string;
  readonly file: string;

  constructor(dir: string) {
    this.dir = dir;
    this.file = join(dir, "config.json");
  }

  load(): ConfigFile {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (error) {
      if (errorCode(error) === "ENOENT") return { profiles: {} };
      throw new CliError(`cannot read ${this.file}: ${messageOf(error)}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new CliError(`${this.file} is not valid JSON (${messageOf(error)}); fix or delete it`);
    }
    const parsed = ConfigSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at '${issue.path.join(".")}'` : "";
      throw new CliError(`${this.file} is malformed${where}: ${issue?.message ?? "invalid"}; fix or delete it`);
    }
    const config: ConfigFile = { profiles: parsed.data.profiles };
    if (parsed.data.current !== undefined) config.current = parsed.data.current;
    return config;
  }

  /**
   * Written to a temporary file in the same directory and renamed over the old
   * one, so a crash or a concurrent `zectre` never leaves a half-written file.
   */
  save(config: ConfigFile): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      chmodSync(this.dir, 0o700);
      const temp = join(this.dir, `.config.json.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
      try {
        const fd = openSync(temp, "wx", 0o600);
        try {
          writeSync(fd, `${JSON.stringify(config, null, 2)}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(temp, this.file);
      } catch (error) {
        if (existsSync(temp)) unlinkSync(temp);
        throw error;
      }
    } catch (error) {
      throw new CliError(`cannot write ${this.file}: ${messageOf(error)}`);
    }
  }
}

export type SourceKind = "flag" | "env" | "profile" | "dev";

export interface Source {
  readonly kind: SourceKind;
  /** For people: where the value came from, e.g. `ZECTRE_URL` or `profile 'prod' (current)`. */
  readonly label: string;
}

export interface Credentials {
  readonly url: string;
  readonly token: string;
  readonly urlSource: Source;
  readonly tokenSource: Source;
  /** The profile that supplied a value, if one did. */
  readonly profile: string | undefined;
}

export interface ResolveInput {
  readonly flags: { readonly url: string | undefined; readonly token: string | undefined; readonly profile: string | undefined };
  readonly env: Io["env"];
  readonly cwd: string;
  readonly store: ConfigStore;
}

interface Layer {
  readonly url: string | undefined;
  readonly token: string | undefined;
  readonly urlSource: Source;
  readonly tokenSource: Source;
  readonly profile?: string;
}

/**
 * First match wins, separately for the URL and the token: flags, then
 * ZECTRE_URL/ZECTRE_TOKEN, then the profile named by --profile or
 * ZECTRE_PROFILE (else the config's current one), then a local dev server
 * found by walking up from the working directory. Later layers are only read
 * when an earlier one left something unset, so a broken config file does not
 * stand in the way of explicit flags.
 */
export function resolveCredentials(input: ResolveInput): Credentials {
  const layers: (() => Layer | undefined)[] = [
    () => ({
      url: input.flags.url,
      token: input.flags.token,
      urlSource: { kind: "flag", label: "--url" },
      tokenSource: { kind: "flag", label: "--token" },
    }),
    () => ({
      url: envValue(input.env, "ZECTRE_URL"),
      token: envValue(input.env, "ZECTRE_TOKEN"),
      urlSource: { kind: "env", label: "ZECTRE_URL" },
      tokenSource: { kind: "env", label: "ZECTRE_TOKEN" },
    }),
    () => profileLayer(input),
    () => devLayer(input.cwd),
  ];
  let url: { value: string; source: Source; profile: string | undefined } | undefined;
  let token: { value: string; source: Source; profile: string | undefined } | undefined;
  for (const next of layers) {
    if (url && token) break;
    const layer = next();
    if (!layer) continue;
    if (!url && layer.url !== undefined) url = { value: layer.url, source: layer.urlSource, profile: layer.profile };
    if (!token && layer.token !== undefined) token = { value: layer.token, source: layer.tokenSource, profile: layer.profile };
  }
  if (!url || !token) throw new CliError(NO_CREDENTIALS);
  return {
    url: normalizeUrl(url.value, url.source),
    token: token.value,
    urlSource: url.source,
    tokenSource: token.source,
    profile: url.profile ?? token.profile,
  };
}

function profileLayer(input: ResolveInput): Layer | undefined {
  const config = input.store.load();
  const fromFlag = input.flags.profile;
  const fromEnv = envValue(input.env, "ZECTRE_PROFILE");
  const name = fromFlag ?? fromEnv ?? config.current;
  if (name === undefined) return undefined;
  const profile = config.profiles[name];
  if (!profile) {
    const why = fromFlag !== undefined ? "--profile" : fromEnv !== undefined ? "ZECTRE_PROFILE" : "the current profile";
    throw new CliError(`no profile named '${name}' (from ${why}) in ${input.store.file}; run 'zectre login --profile ${name} --url URL --token TOKEN'`);
  }
  const how = fromFlag !== undefined ? "--profile" : fromEnv !== undefined ? "ZECTRE_PROFILE" : "current";
  const source: Source = { kind: "profile", label: `profile '${name}' (${how})` };
  return { url: profile.url, token: profile.token, urlSource: source, tokenSource: source, profile: name };
}

export interface DevServer {
  /** The `.zectre` directory that was found. */
  readonly dir: string;
  readonly url: string;
  readonly token: string;
}

/** `npm run dev` leaves `.zectre/admin-token` (and `dev.json` with its URL) in the checkout. */
export function findDevServer(cwd: string): DevServer | undefined {
  for (let dir = cwd; ; dir = dirname(dir)) {
    const stateDir = join(dir, ".zectre");
    const tokenFile = join(stateDir, "admin-token");
    if (isFile(tokenFile)) {
      const token = readFileSync(tokenFile, "utf8").trim();
      if (token !== "") return { dir: stateDir, url: devUrl(stateDir), token };
    }
    if (dirname(dir) === dir) return undefined;
  }
}

function devLayer(cwd: string): Layer | undefined {
  const dev = findDevServer(cwd);
  if (!dev) return undefined;
  const source: Source = { kind: "dev", label: `local dev server (${dev.dir})` };
  return { url: dev.url, token: dev.token, urlSource: source, tokenSource: source };
}

function devUrl(stateDir: string): string {
  try {
    const info: unknown = JSON.parse(readFileSync(join(stateDir, "dev.json"), "utf8"));
    if (typeof info === "object" && info !== null && "apiUrl" in info && typeof info.apiUrl === "string") return info.apiUrl;
  } catch {
    // No dev.json (or a half-written one): the dev server's default port is the best guess.
  }
  return DEV_DEFAULT_URL;
}

/** Accepts only http(s) URLs and drops trailing slashes so paths join cleanly. */
export function normalizeUrl(raw: string, source?: Source): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`invalid server URL '${raw}'${source ? ` (from ${source.label})` : ""}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError(`invalid server URL '${raw}'${source ? ` (from ${source.label})` : ""}: use http:// or https://`);
  }
  return url.href.replace(/\/+$/, "");
}

/** One phrase for where both values came from, as `zectre status` shows it. */
export function describeSources(credentials: Credentials): string {
  const { urlSource, tokenSource } = credentials;
  if (urlSource.kind === "flag" && tokenSource.kind === "flag") return "flags (--url, --token)";
  if (urlSource.kind === "env" && tokenSource.kind === "env") return "environment (ZECTRE_URL, ZECTRE_TOKEN)";
  if (urlSource.label === tokenSource.label) return urlSource.label;
  return `URL from ${urlSource.label}, token from ${tokenSource.label}`;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
