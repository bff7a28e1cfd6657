import { beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ApiClient } from "../../cli/src/client.ts";
import { writeTree } from "./helpers/deploy-cli.ts";
import { TOKENS, useFakeDeployApi } from "./helpers/fake-deploy-api.ts";
import { expectOk, expectOneErrorLine, lines, runBinary, runInProcess } from "./helpers/run-cli.ts";

/** `zectre app ...`, `deployments`, `promote`, `rollback` and `scale` against the fake deployments API. */

const { api, configDir, tempDir } = useFakeDeployApi();
let cwd: string;

beforeEach(async () => {
  cwd = tempDir();
});

const flags = (token: string = TOKENS.operate) => ["--url", api.url, "--token", token];
const zectre = (...args: string[]) => runInProcess([...flags(), ...args], { env: { ZECTRE_CONFIG_DIR: configDir() }, cwd });
const client = () => new ApiClient({ url: api.url, token: TOKENS.operate });
const cells = (row: string | undefined) => (row ?? "").split(/\s{2,}/);

/** A deployment made through the API, with its tasks' states settled. */
async function seedDeployment(app: string, replicas = 1): Promise<string> {
  const { deployment } = await client().createDeployment(app, { artifacts: [{ digest: "b".repeat(64), size: 10, layer: "app" }], command: "run", replicas });
  const settled = () => api.apps.get(app)?.deployments.find((d) => d.id === deployment.id)?.status === (replicas === 0 ? "pending" : "healthy");
  for (let i = 0; i < 500 && !settled(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  return deployment.id;
}

describe("zectre app", () => {
  it("creates, lists and shows apps", async () => {
    expect(expectOk(await zectre("app", "list"))).toBe("No apps found.\n");
    expect(expectOk(await zectre("app", "create", "web"))).toBe("Created app web; deploy it with 'zectre deploy --app web'\n");
    expect(expectOk(await zectre("app", "show", "web"))).toBe(
      ["App:       web", "Promoted:  none", "Latest:    none", "Created:   2026-11-23 09:00Z by token:operate", "", "No deployments yet; run 'zectre deploy --app web'.", ""].join("\n"),
    );
    const first = await seedDeployment("web");
    const second = await seedDeployment("web", 2);
    await client().createApp("api");

    const list = lines(expectOk(await zectre("app", "list")));
    expect(cells(list[0])).toEqual(["NAME", "PROMOTED", "LATEST", "CREATED"]);
    expect(cells(list[1])).toEqual(["web", first, second, "2026-11-23 09:00Z"]);
    expect(cells(list[2])).toEqual(["api", "-", "-", "2026-11-23 09:00Z"]);

    const show = lines(expectOk(await zectre("app", "show", "web")));
    expect(show.slice(0, 3)).toEqual(["App:       web", `Promoted:  ${first}`, `Latest:    ${second}`]);
    expect(cells(show[4])).toEqual(["ID", "APP", "STATUS", "REPLICAS", "PROMOTED", "CREATED"]);
    expect(cells(show[5]).slice(0, 5)).toEqual([second, "web", "healthy", "2/2", "-"]);
    expect(cells(show[6]).slice(0, 5)).toEqual([first, "web", "healthy", "1/1", "yes"]);

    const json = JSON.parse(expectOk(await zectre("app", "show", "web", "--format", "json"))) as { app: { name: string }; deployments: { id: string }[] };
    expect(json.app.name).toBe("web");
    expect(json.deployments.map((d) => d.id)).toEqual([second, first]);
    const yaml = parseYaml(expectOk(await zectre("app", "list", "--format", "yaml"))) as { apps: { name: string }[] };
    expect(yaml.apps.map((a) => a.name)).toEqual(["web", "api"]);
  });

  it("reports the server's refusals and bad names in one line", async () => {
    await client().createApp("web");
    expectOneErrorLine(await zectre("app", "create", "web"), "zectre: error: app web already exists (conflict)");
    expectOneErrorLine(await zectre("app", "show", "nope"), "zectre: error: app nope not found (not_found)");
    expectOneErrorLine(await zectre("app", "create", "Web_1"), /^zectre: error: invalid app name 'Web_1': app names are 2-32 lowercase .*; see 'zectre app create --help'\n$/);
    expectOneErrorLine(await zectre("app", "create"), "zectre: error: missing argument NAME; see 'zectre app create --help'");
    expectOneErrorLine(await runInProcess([...flags(TOKENS.read), "app", "create", "api"], { env: { ZECTRE_CONFIG_DIR: configDir() } }), /needs the 'operate' scope/);
    // The seed, the conflict and the refused one reached the server; the bad name and the missing one did not.
    expect(api.requests.filter((r) => r.method === "POST").map((r) => r.body)).toEqual([{ name: "web" }, { name: "web" }, { name: "api" }]);
  });
});

describe("zectre deployments", () => {
  it("lists one app's, the app named in ./zectre.json, or every app's", async () => {
    await client().createApp("web");
    const web = await seedDeployment("web");
    await client().createApp("api");
    const api1 = await seedDeployment("api", 0);

    const one = lines(expectOk(await zectre("deployments", "web")));
    expect(cells(one[0])).toEqual(["ID", "APP", "STATUS", "REPLICAS", "PROMOTED", "CREATED"]);
    expect(one).toHaveLength(2);
    expect(cells(one[1]).slice(0, 5)).toEqual([web, "web", "healthy", "1/1", "yes"]);

    const all = lines(expectOk(await zectre("deployments")));
    expect(all.slice(1).map((row) => cells(row)[0])).toEqual([api1, web]);

    writeTree(cwd, { "zectre.json": { app: "api" } });
    const fromConfig = lines(expectOk(await zectre("deployments")));
    expect(fromConfig.slice(1).map((row) => cells(row)[0])).toEqual([api1]);

    await client().createApp("empty");
    expect(expectOk(await zectre("deployments", "empty"))).toBe("No deployments found.\n");
    const json = JSON.parse(expectOk(await zectre("deployments", "web", "--format", "json"))) as { deployments: { id: string }[] };
    expect(json.deployments.map((d) => d.id)).toEqual([web]);
  });
});

describe("promote, rollback and scale", () => {
  it("promotes a deployment, rolls back to the previous one, and scales the promoted one", async () => {
    await client().createApp("web");
    const first = await seedDeployment("web");
    const second = await seedDeployment("web");
    expect(expectOk(await zectre("promote", second))).toBe(`Promoted ${second}: http://web.acme.localhost:47000 now serves it\n`);
    expect(api.apps.get("web")?.summary.promoted).toBe(second);

    expect(expectOk(await zectre("rollback", "web"))).toBe(`Rolled back web: ${first} is promoted again (was ${second})\n`);
    expect(api.apps.get("web")?.summary.promoted).toBe(first);

    expect(expectOk(await zectre("scale", "web", "3"))).toBe(`Scaled web to 3 replicas (deployment ${first})\n`);
    expect(api.requests.at(-1)?.body).toEqual({ replicas: 3 });
    const scaled = JSON.parse(expectOk(await zectre("scale", "web", "1", "--format", "json"))) as { deployment: { replicas: number } };
    expect(scaled.deployment.replicas).toBe(1);

    writeTree(cwd, { "zectre.json": { app: "web" } });
    expect(expectOk(await zectre("rollback"))).toBe(`Rolled back web: ${second} is promoted again (was ${first})\n`);
  });

  it("reports usage mistakes and refusals in one line", async () => {
    await client().createApp("web");
    await seedDeployment("web");
    expectOneErrorLine(await zectre("rollback", "web"), "zectre: error: app web has no previous promoted deployment (conflict)");
    expectOneErrorLine(await zectre("rollback"), /^zectre: error: missing argument APP \(there is no zectre\.json with an "app" in .*\); see 'zectre rollback --help'\n$/);
    expectOneErrorLine(await zectre("promote", "web"), /^zectre: error: invalid DEPLOYMENT 'web': deployment ids look like d\w+; see 'zectre promote --help'\n$/);
    expectOneErrorLine(await zectre("promote", `d${"z".repeat(12)}`), `zectre: error: deployment d${"z".repeat(12)} not found (not_found)`);
    expectOneErrorLine(await zectre("scale", "web", "many"), "zectre: error: invalid REPLICAS 'many': give a whole number from 0 to 100; see 'zectre scale --help'");
    expectOneErrorLine(await zectre("scale", "web", "101"), /invalid REPLICAS '101'/);
    expectOneErrorLine(await zectre("scale", "web"), "zectre: error: missing argument REPLICAS; see 'zectre scale --help'");
  });

  it("every command has help with examples, through the shipped binary", async () => {
    for (const words of [["app", "create"], ["app", "list"], ["app", "show"], ["deployments"], ["promote"], ["rollback"], ["scale"]]) {
      const result = await runBinary([...words, "--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: zectre ${words.join(" ")}`));
      expect(result.stdout).toContain(`Examples:\n  zectre ${words.join(" ")}`);
    }
  });
});
