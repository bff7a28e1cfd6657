import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runWithFakeArtifacts, writeTree } from "./helpers/deploy-cli.ts";
import { TOKENS, useFakeDeployApi } from "./helpers/fake-deploy-api.ts";
import { expectOk, lines, runInProcess } from "./helpers/run-cli.ts";

/** `zectre deploy --min N --idle-timeout D` (and their zectre.json keys), and how deployments that scale down are listed. */

const { api, configDir, tempDir } = useFakeDeployApi();

const withUrl = (args: string[]) => ["--url", api.url, "--token", TOKENS.operate, ...args];
const NPM_APP = { "package.json": { name: "x", scripts: { start: "node server.js" } } };

function appDir(name: string, files: Record<string, string | object> = NPM_APP): string {
  const dir = join(tempDir(), name);
  mkdirSync(dir);
  return writeTree(dir, files);
}

const deploy = (dir: string, ...args: string[]) => runWithFakeArtifacts(withUrl(["deploy", ...args]), { cwd: dir, configDir: configDir() });
const deploymentBodies = () => api.requests.filter((r) => r.method === "POST" && /\/deployments$/.test(r.path)).map((r) => r.body as Record<string, unknown>);

describe("zectre deploy: scale to zero", () => {
  it("sends --min and --idle-timeout (as seconds) in the deployment body", async () => {
    const result = await deploy(appDir("web"), "--min", "0", "--idle-timeout", "2m");
    expect(result.code).toBe(0);
    expect(deploymentBodies()[0]).toMatchObject({ minReplicas: 0, idleTimeoutSeconds: 120 });
  });

  it("takes minReplicas and idleTimeoutSeconds from zectre.json; flags override them", async () => {
    const dir = appDir("web", { ...NPM_APP, "zectre.json": { replicas: 3, minReplicas: 1, idleTimeoutSeconds: 45 } });
    expect((await deploy(dir)).code).toBe(0);
    expect((await deploy(dir, "--min", "0", "--idle-timeout", "90")).code).toBe(0);
    expect(deploymentBodies().map((b) => [b.replicas, b.minReplicas, b.idleTimeoutSeconds])).toEqual([
      [3, 1, 45],
      [3, 0, 90],
    ]);
  });

  it("refuses bad values with one line and sends nothing", async () => {
    const cases: [Record<string, string | object>, string[], RegExp][] = [
      [NPM_APP, ["--min", "2"], /--min 2 is more than the 1 replica deployed; give a minimum from 0 to 1/],
      [NPM_APP, ["--replicas", "2", "--min", "3"], /--min 3 is more than the 2 replicas deployed/],
      [NPM_APP, ["--min", "-1"], /invalid --min '-1': give a whole number from 0 to 100/],
      [NPM_APP, ["--min", "0", "--idle-timeout", "0"], /invalid --idle-timeout '0': give seconds \(or 90s, 5m, 2h\) from 1 to 604800/],
      [NPM_APP, ["--idle-timeout", "soon"], /invalid --idle-timeout 'soon'/],
      [{ ...NPM_APP, "zectre.json": { idleTimeoutSeconds: 0 } }, [], /zectre\.json: 'idleTimeoutSeconds': /],
      [{ ...NPM_APP, "zectre.json": { minReplicas: 1.5 } }, [], /zectre\.json: 'minReplicas': /],
    ];
    for (const [i, [files, args, pattern]] of cases.entries()) {
      const result = await deploy(appDir(`case${i}`, files), ...args);
      expect(result.code, args.join(" ")).toBe(1);
      expect(result.stdout).toBe("");
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(pattern);
    }
    expect(api.requests).toEqual([]);
  });

  it("lists the minimum and idle timeout beside the replicas, in deployments and app show", async () => {
    expect((await deploy(appDir("web"), "--app", "web", "--min", "0", "--idle-timeout", "60s")).code).toBe(0);
    const zectre = (...args: string[]) => runInProcess(withUrl(args), { env: { ZECTRE_CONFIG_DIR: configDir() }, cwd: tempDir() });
    const list = lines(expectOk(await zectre("deployments", "web")));
    expect(list[1]).toContain("1/1 (min 0 after 1m idle)");
    const show = lines(expectOk(await zectre("app", "show", "web")));
    expect(show.at(-1)).toContain("1/1 (min 0 after 1m idle)");
  });
});
