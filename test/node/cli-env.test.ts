import { beforeEach, describe, expect, it } from "vitest";
import { ApiClient } from "../../cli/src/client.ts";
import { TOKENS, useFakeDeployApi } from "./helpers/fake-deploy-api.ts";
import { expectOk, expectOneErrorLine, lines, runInProcess } from "./helpers/run-cli.ts";

/** `zectre env set|unset|list` against the fake deployments API: secrets are never printed back unless --reveal. */

const { api, configDir } = useFakeDeployApi();

beforeEach(async () => {
  await new ApiClient({ url: api.url, token: TOKENS.operate }).createApp("web");
});

const as = (token: string, ...args: string[]) => runInProcess(["--url", api.url, "--token", token, ...args], { env: { ZECTRE_CONFIG_DIR: configDir() } });
const zectre = (...args: string[]) => as(TOKENS.operate, ...args);
const cells = (row: string | undefined) => (row ?? "").split(/\s{2,}/);
const puts = () => api.requests.filter((r) => r.method === "PUT").map((r) => ({ path: r.path, body: r.body }));

describe("zectre env", () => {
  it("sets plain values and secrets without echoing a value, and lists secrets masked", async () => {
    expect(expectOk(await zectre("env", "set", "web", "NODE_ENV=production", "GREETING=a=b c"))).toBe("Set NODE_ENV, GREETING on web\n");
    const set = await zectre("env", "set", "web", "DB_PASSWORD=hunter2-very-secret", "--secret");
    expect(expectOk(set)).toBe("Set DB_PASSWORD on web (secret)\n");
    expect(puts()).toEqual([
      { path: "/api/v1/apps/web/env/NODE_ENV", body: { value: "production", secret: false } },
      { path: "/api/v1/apps/web/env/GREETING", body: { value: "a=b c", secret: false } },
      { path: "/api/v1/apps/web/env/DB_PASSWORD", body: { value: "hunter2-very-secret", secret: true } },
    ]);
    const json = await zectre("env", "set", "web", "TOKEN=s3cr3t-value", "--secret", "--format", "json");
    expect(JSON.parse(expectOk(json))).toEqual({ app: "web", set: [{ name: "TOKEN", secret: true }] });
    expect(json.stdout).not.toContain("s3cr3t-value");

    const listed = await zectre("env", "list", "web");
    const rows = lines(expectOk(listed));
    expect(listed.stdout).not.toContain("hunter2");
    expect(cells(rows[0])).toEqual(["NAME", "VALUE", "SECRET", "UPDATED"]);
    expect(rows.slice(1).map(cells)).toEqual([
      ["NODE_ENV", "production", "-", "2026-11-23 09:30Z"],
      ["GREETING", "a=b c", "-", "2026-11-23 09:30Z"],
      ["DB_PASSWORD", "••••••", "yes", "2026-11-23 09:30Z"],
      ["TOKEN", "••••••", "yes", "2026-11-23 09:30Z"],
    ]);
    const listedJson = JSON.parse(expectOk(await zectre("env", "list", "web", "--format", "json"))) as { env: { name: string; value: string | null }[] };
    expect(listedJson.env.find((one) => one.name === "DB_PASSWORD")?.value).toBeNull();
  });

  it("--reveal shows secrets to an admin and is refused (403) for others", async () => {
    await zectre("env", "set", "web", "DB_PASSWORD=hunter2", "--secret");
    const revealed = lines(expectOk(await as(TOKENS.admin, "env", "list", "web", "--reveal")));
    expect(cells(revealed[1]).slice(0, 3)).toEqual(["DB_PASSWORD", "hunter2", "yes"]);
    expect(api.requests.at(-1)?.query.get("reveal")).toBe("1");
    expectOneErrorLine(await zectre("env", "list", "web", "--reveal"), "zectre: error: revealing secrets needs an admin token (forbidden)");
  });

  it("masks a secret even when a server sends its value unasked", async () => {
    await zectre("env", "set", "web", "LEAK=should-not-show", "--secret");
    api.leakSecrets = true;
    for (const format of ["text", "json", "yaml"]) {
      const answer = await zectre("env", "list", "web", "--format", format);
      expect(answer.code).toBe(0);
      expect(answer.stdout).not.toContain("should-not-show");
    }
    // The fake really does leak: the raw answer carries the value.
    const raw = await new ApiClient({ url: api.url, token: TOKENS.operate }).listEnv("web", false);
    expect(raw.env[0]?.value).toBe("should-not-show");
  });

  it("unsets variables, and names the one the server does not know", async () => {
    await zectre("env", "set", "web", "A=1", "B=2");
    expect(expectOk(await zectre("env", "unset", "web", "A", "B", "A"))).toBe("Removed A, B from web\n");
    expect(api.requests.filter((r) => r.method === "DELETE").map((r) => r.path)).toEqual(["/api/v1/apps/web/env/A", "/api/v1/apps/web/env/B"]);
    expect(expectOk(await zectre("env", "list", "web"))).toBe("No variables set on web.\n");
    expectOneErrorLine(await zectre("env", "unset", "web", "A"), "zectre: error: variable A not found (not_found)");
  });

  it("rejects bad words before sending anything", async () => {
    const before = api.requests.length;
    expectOneErrorLine(await zectre("env", "set", "web"), "zectre: error: missing NAME=VALUE: give at least one variable to set; see 'zectre env set --help'");
    expectOneErrorLine(await zectre("env", "set", "web", "NOVALUE"), "zectre: error: invalid NAME=VALUE 'NOVALUE': write NAME=VALUE; see 'zectre env set --help'");
    expectOneErrorLine(await zectre("env", "set", "web", "1BAD=x"), /invalid variable name '1BAD': use letters, digits and _/);
    expectOneErrorLine(await zectre("env", "set", "web", "PORT=80"), /PORT is set by Zectre for every task and cannot be overridden/);
    expectOneErrorLine(await zectre("env", "set", "Web", "A=1"), /invalid app name 'Web'/);
    expectOneErrorLine(await zectre("env", "unset", "web"), "zectre: error: missing NAME: give at least one variable to remove; see 'zectre env unset --help'");
    expectOneErrorLine(await zectre("env", "unset", "web", "A-B"), /invalid variable name 'A-B'/);
    expect(api.requests.length).toBe(before);
  });

  it("reports the server's refusals in one line", async () => {
    const read = await as(TOKENS.read, "env", "set", "web", "A=1");
    expectOneErrorLine(read, "zectre: error: this action needs the 'operate' scope; the token has 'read' (forbidden)");
    expectOneErrorLine(await zectre("env", "set", "nope", "A=1"), "zectre: error: app nope not found (not_found)");
    expectOneErrorLine(await zectre("env", "list", "nope"), "zectre: error: app nope not found (not_found)");
  });
});
