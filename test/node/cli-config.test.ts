import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type ConfigFile,
  ConfigStore,
  configDir,
  DEV_DEFAULT_URL,
  describeSources,
  findDevServer,
  NO_CREDENTIALS,
  normalizeUrl,
  type ResolveInput,
  resolveCredentials,
} from "../../cli/src/config.ts";
import { CliError } from "../../cli/src/errors.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

const tempDir = useTempDirs();
const mode = (path: string) => statSync(path).mode & 0o777;

describe("config location", () => {
  it("prefers ZECTRE_CONFIG_DIR, then XDG_CONFIG_HOME, then ~/.config", () => {
    expect(configDir({ ZECTRE_CONFIG_DIR: "/a", XDG_CONFIG_HOME: "/b", HOME: "/h" })).toBe("/a");
    expect(configDir({ XDG_CONFIG_HOME: "/b", HOME: "/h" })).toBe("/b/zectre");
    expect(configDir({ HOME: "/h" })).toBe("/h/.config/zectre");
    expect(configDir({ ZECTRE_CONFIG_DIR: "", HOME: "/h" })).toBe("/h/.config/zectre");
  });
});

describe("config file", () => {
  it("reads a missing file as empty", () => {
    expect(new ConfigStore(join(tempDir(), "none")).load()).toEqual({ profiles: {} });
  });

  it("creates the directory 0700 and the file 0600, leaving no temporary files", () => {
    const dir = join(tempDir(), "nested", "zectre");
    const store = new ConfigStore(dir);
    const config: ConfigFile = { current: "prod", profiles: { prod: { url: "https://api.example.com", token: "zt_secret" } } };
    store.save(config);
    expect(mode(dir)).toBe(0o700);
    expect(mode(store.file)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["config.json"]);
    expect(JSON.parse(readFileSync(store.file, "utf8"))).toEqual(config);
    expect(store.load()).toEqual(config);
  });

  it("replaces a world-readable file with a 0600 one and tightens the directory", () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const store = new ConfigStore(dir);
    writeFileSync(store.file, JSON.stringify({ profiles: {} }), { mode: 0o644 });
    chmodSync(store.file, 0o644);
    store.save({ profiles: { a: { url: "http://a", token: "t" } } });
    expect(mode(store.file)).toBe(0o600);
    expect(mode(dir)).toBe(0o700);
    expect(store.load().profiles.a?.token).toBe("t");
  });

  it("names the file when it is not valid", () => {
    const store = new ConfigStore(tempDir());
    writeFileSync(store.file, "{ nope");
    expect(() => store.load()).toThrow(CliError);
    expect(() => store.load()).toThrow(`${store.file} is not valid JSON`);
    writeFileSync(store.file, JSON.stringify({ profiles: { a: { url: "http://a" } } }));
    expect(() => store.load()).toThrow(/is malformed at 'profiles\.a\.token'/);
  });
});

describe("credential resolution", () => {
  function setup() {
    const root = tempDir();
    const store = new ConfigStore(join(root, "config"));
    store.save({
      current: "cur",
      profiles: {
        cur: { url: "http://current.example", token: "t-current" },
        named: { url: "http://named.example", token: "t-named" },
        other: { url: "http://other.example", token: "t-other" },
      },
    });
    const work = join(root, "repo", "sub", "dir");
    mkdirSync(join(root, "repo", ".zectre"), { recursive: true });
    mkdirSync(work, { recursive: true });
    writeFileSync(join(root, "repo", ".zectre", "admin-token"), "t-dev\n");
    writeFileSync(join(root, "repo", ".zectre", "dev.json"), JSON.stringify({ apiUrl: "http://127.0.0.1:47999", pid: 1 }));
    const input = (over: Partial<ResolveInput> = {}): ResolveInput => ({
      flags: { url: undefined, token: undefined, profile: undefined },
      env: {},
      cwd: work,
      store,
      ...over,
    });
    return { root, store, work, input };
  }

  it("takes the first match: flags, env, --profile, ZECTRE_PROFILE, current profile, dev server", () => {
    const { root, store, input } = setup();
    const flags = { url: "http://flag.example", token: "t-flag", profile: "named" };
    const env = { ZECTRE_URL: "http://env.example", ZECTRE_TOKEN: "t-env", ZECTRE_PROFILE: "other" };

    expect(resolveCredentials(input({ flags, env }))).toMatchObject({ url: "http://flag.example", token: "t-flag", profile: undefined });
    const fromEnv = resolveCredentials(input({ flags: { ...flags, url: undefined, token: undefined }, env }));
    expect(fromEnv).toMatchObject({ url: "http://env.example", token: "t-env" });
    expect(describeSources(fromEnv)).toBe("environment (ZECTRE_URL, ZECTRE_TOKEN)");

    const envProfile = { ZECTRE_PROFILE: "other" };
    const fromFlagProfile = resolveCredentials(input({ flags: { url: undefined, token: undefined, profile: "named" }, env: envProfile }));
    expect(fromFlagProfile).toMatchObject({ url: "http://named.example", token: "t-named", profile: "named" });
    expect(describeSources(fromFlagProfile)).toBe("profile 'named' (--profile)");

    const fromEnvProfile = resolveCredentials(input({ env: envProfile }));
    expect(fromEnvProfile).toMatchObject({ url: "http://other.example", token: "t-other" });
    expect(describeSources(fromEnvProfile)).toBe("profile 'other' (ZECTRE_PROFILE)");

    const fromCurrent = resolveCredentials(input());
    expect(fromCurrent).toMatchObject({ url: "http://current.example", token: "t-current", profile: "cur" });
    expect(describeSources(fromCurrent)).toBe("profile 'cur' (current)");

    store.save({ profiles: {} });
    const fromDev = resolveCredentials(input());
    expect(fromDev).toMatchObject({ url: "http://127.0.0.1:47999", token: "t-dev" });
    expect(describeSources(fromDev)).toBe(`local dev server (${join(root, "repo", ".zectre")})`);
  });

  it("resolves the URL and the token separately", () => {
    const { input } = setup();
    const mixed = resolveCredentials(input({ flags: { url: "http://flag.example/", token: undefined, profile: undefined }, env: {} }));
    expect(mixed).toMatchObject({ url: "http://flag.example", token: "t-current" });
    expect(describeSources(mixed)).toBe("URL from --url, token from profile 'cur' (current)");
    const envToken = resolveCredentials(input({ env: { ZECTRE_TOKEN: "t-env" } }));
    expect(envToken).toMatchObject({ url: "http://current.example", token: "t-env" });
  });

  it("does not read the config when flags settle everything", () => {
    const { store, input } = setup();
    writeFileSync(store.file, "not json");
    const resolved = resolveCredentials(input({ flags: { url: "http://f.example", token: "t", profile: "missing" } }));
    expect(resolved.url).toBe("http://f.example");
    expect(() => resolveCredentials(input())).toThrow(/is not valid JSON/);
  });

  it("fails clearly for a named profile that does not exist", () => {
    const { input } = setup();
    expect(() => resolveCredentials(input({ env: { ZECTRE_PROFILE: "typo" } }))).toThrow(
      /^no profile named 'typo' \(from ZECTRE_PROFILE\) in .*config\.json; run 'zectre login --profile typo/,
    );
  });

  it("reports no credentials when nothing matches", () => {
    const root = tempDir();
    const input: ResolveInput = { flags: { url: undefined, token: undefined, profile: undefined }, env: {}, cwd: root, store: new ConfigStore(join(root, "cfg")) };
    expect(() => resolveCredentials(input)).toThrow(NO_CREDENTIALS);
    expect(NO_CREDENTIALS).toBe("no credentials: run 'zectre login --url URL --token TOKEN' or start a local server with 'npm run dev'");
    // A URL alone is not enough.
    expect(() => resolveCredentials({ ...input, flags: { url: "http://x", token: undefined, profile: undefined } })).toThrow(NO_CREDENTIALS);
  });

  it("rejects URLs that are not http(s), naming their source", () => {
    const { input } = setup();
    expect(() => resolveCredentials(input({ env: { ZECTRE_URL: "ftp://x" } }))).toThrow("invalid server URL 'ftp://x' (from ZECTRE_URL): use http:// or https://");
    expect(() => normalizeUrl("not a url")).toThrow("invalid server URL 'not a url'");
    expect(normalizeUrl("https://api.example.com/base//")).toBe("https://api.example.com/base");
  });
});

describe("local dev server discovery", () => {
  it("walks up from the working directory and defaults the URL without dev.json", () => {
    const root = tempDir();
    mkdirSync(join(root, ".zectre"));
    mkdirSync(join(root, "a", "b"), { recursive: true });
    writeFileSync(join(root, ".zectre", "admin-token"), "  t-dev  \n");
    expect(findDevServer(join(root, "a", "b"))).toEqual({ dir: join(root, ".zectre"), url: DEV_DEFAULT_URL, token: "t-dev" });
    expect(DEV_DEFAULT_URL).toBe("http://localhost:47080");
    writeFileSync(join(root, ".zectre", "dev.json"), "{ half-written");
    expect(findDevServer(root)?.url).toBe(DEV_DEFAULT_URL);
  });

  it("ignores a .zectre directory without an admin token", () => {
    const root = tempDir();
    mkdirSync(join(root, ".zectre"));
    writeFileSync(join(root, ".zectre", "dev.json"), JSON.stringify({ apiUrl: "http://x" }));
    expect(findDevServer(root)).toBeUndefined();
  });
});
