import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appNameFrom } from "../../cli/src/deploy-config.ts";
import { ApiClient } from "../../cli/src/client.ts";
import { APP_DIGEST, DEPS_DIGEST, fakePrepare, runWithFakeArtifacts, until, writeTree } from "./helpers/deploy-cli.ts";
import { CRASHING_SCRIPT, useFakeDeployApi, TOKENS } from "./helpers/fake-deploy-api.ts";
import { lines, runBinary } from "./helpers/run-cli.ts";

/**
 * `zectre deploy` against the fake deployments API: config from zectre.json and flags,
 * app creation, the deployment body, following task states over the app's event
 * stream (with a reconnect), the deadline, --detach, --format json and Ctrl-C.
 * The artifact step is a fake that returns fixed digests.
 */

const { api, configDir, tempDir } = useFakeDeployApi();

const flags = (token: string = TOKENS.operate) => ["--url", api.url, "--token", token];
const NPM_APP = { "package.json": { name: "x", scripts: { start: "node server.js" } } };

function appDir(name: string, files: Record<string, string | object> = NPM_APP): string {
  const dir = join(tempDir(), name);
  mkdirSync(dir);
  return writeTree(dir, files);
}

const deploy = (dir: string, ...args: string[]) => runWithFakeArtifacts([...flags(), "deploy", ...args], { cwd: dir, configDir: configDir() });
const deploymentBodies = () => api.requests.filter((r) => r.method === "POST" && /\/deployments$/.test(r.path)).map((r) => r.body);
const client = () => new ApiClient({ url: api.url, token: TOKENS.operate });

describe("zectre deploy", () => {
  it("creates the app on first deploy, uploads, prints id and preview, follows the task until healthy", async () => {
    const dir = appDir("My_Shop.v2");
    const prepare = fakePrepare();
    const result = await runWithFakeArtifacts([...flags(), "deploy"], { cwd: dir, configDir: configDir(), prepare: prepare.prepare });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(prepare.dirs).toEqual([dir]);

    const [deployment] = api.apps.get("my-shop-v2")?.deployments ?? [];
    const id = deployment?.id ?? "missing";
    const task = deployment?.tasks[0]?.taskId ?? "missing";
    expect(result.stdout).toBe(
      [
        "Creating app my-shop-v2",
        `  app   ${APP_DIGEST.slice(0, 12)}  12 files, 4.1 KiB  uploaded`,
        `  deps  ${DEPS_DIGEST.slice(0, 12)}  3.1 MiB  reused (lockfile unchanged)`,
        `Deployment ${id}`,
        `Preview: http://${id}.my-shop-v2.acme.localhost:47000`,
        "Waiting for 1 task to become healthy (up to 120s)",
        `  ${task} on web-1: assigned`,
        `  ${task} on web-1: starting`,
        `  ${task} on web-1: healthy (127.0.0.1:41000)`,
        `Deployment ${id} is healthy`,
        "Promoted: http://my-shop-v2.acme.localhost:47000 serves it",
        "",
      ].join("\n"),
    );
    // Only what was chosen is sent; the server fills in the defaults.
    expect(deploymentBodies()).toEqual([
      {
        artifacts: [
          { digest: APP_DIGEST, size: 4200, layer: "app" },
          { digest: DEPS_DIGEST, size: 3_300_000, layer: "deps" },
        ],
        command: "npm start",
      },
    ]);
    // The app was looked up (404), then created, and the stream opened before the deployment was created.
    const order = api.requests.map((r) => `${r.method} ${r.path}`);
    expect(order.slice(0, 4)).toEqual([
      "GET /api/v1/apps/my-shop-v2",
      "POST /api/v1/apps",
      "GET /api/v1/apps/my-shop-v2/events",
      "POST /api/v1/apps/my-shop-v2/deployments",
    ]);
  });

  it("takes defaults from zectre.json and lets flags override them", async () => {
    await client().createApp("shop");
    const dir = appDir("anything", {
      "zectre.json": {
        app: "shop",
        command: "node file.js",
        replicas: 2,
        healthCheck: { type: "tcp" },
        resources: { cpu: 0.5, memoryMb: 64 },
        constraints: ["G@role:db"],
        env: { A: "1", B: "file" },
        runtime: "process",
        port: 8080,
      },
    });
    const result = await deploy(dir, "--memory", "256", "--constraint", "G@role:web", "--constraint", "not web-3", "--env", "B=flag", "--env", "C=x=y");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain("Creating app");
    expect(deploymentBodies()[0]).toMatchObject({
      command: "node file.js",
      replicas: 2,
      healthCheck: { type: "tcp" },
      resources: { cpu: 0.5, memoryMb: 256 },
      constraints: ["G@role:web", "not web-3"],
      env: { A: "1", B: "flag", C: "x=y" },
      runtime: "process",
      port: 8080,
    });
    // Two replicas: both tasks reach healthy before the command says so.
    const healthyLines = lines(result.stdout).filter((line) => line.includes(": healthy (127.0.0.1:"));
    expect(healthyLines).toHaveLength(2);
    expect(result.stdout).toMatch(/Deployment d\w+ is healthy\n/);
  });

  it("sends every flag in the body: health path, cpu, runtime, port, promote", async () => {
    const dir = appDir("web");
    const result = await deploy(dir, "--app", "web2", "--command", "node s.js", "--replicas", "1", "--health-path", "/healthz", "--cpu", "0.25", "--runtime", "docker", "--port", "3000", "--promote");
    expect(result.code).toBe(0);
    expect(deploymentBodies()[0]).toEqual({
      artifacts: expect.any(Array),
      command: "node s.js",
      replicas: 1,
      healthCheck: { type: "http", path: "/healthz" },
      resources: { cpu: 0.25 },
      runtime: "docker",
      port: 3000,
      promote: true,
    });
  });

  it("says when a later deployment is not promoted", async () => {
    const dir = appDir("web");
    expect((await deploy(dir)).code).toBe(0);
    const second = await deploy(dir);
    expect(second.code).toBe(0);
    const id = api.apps.get("web")?.deployments[1]?.id;
    expect(second.stdout).toContain(`Not promoted: 'zectre promote ${id}' makes http://web.acme.localhost:47000 serve it\n`);
  });

  it("rejects bad configuration with one line and sends nothing", async () => {
    const cases: [Record<string, string | object>, string[], RegExp][] = [
      [{ "zectre.json": { replica: 2 } }, [], /zectre\.json: unknown key 'replica'; known keys: app, command, replicas,/],
      [{ "zectre.json": { resources: { cpus: 1 } } }, [], /unknown key 'cpus' in 'resources'/],
      [{ "zectre.json": "{ not json" }, [], /zectre\.json is not valid JSON/],
      [{ "zectre.json": { replicas: "two" } }, [], /zectre\.json: 'replicas': /],
      [{ "zectre.json": { env: { PORT: "1" } } }, [], /zectre\.json: 'env': these variables are set by Zectre/],
      [{}, [], /no command to run: .* has no package\.json with a "start" script; pass --command CMD/],
      [NPM_APP, ["--replicas", "500"], /invalid --replicas '500': give a whole number from 0 to 100; see 'zectre deploy --help'/],
      [NPM_APP, ["--health-path", "healthz"], /invalid --health-path 'healthz'/],
      [NPM_APP, ["--health-path", "/h", "--health-tcp"], /give either --health-path or --health-tcp, not both/],
      [NPM_APP, ["--cpu", "lots"], /invalid --cpu 'lots'/],
      [NPM_APP, ["--memory", "0"], /invalid --memory '0'/],
      [NPM_APP, ["--env", "PORT=80"], /PORT is set by Zectre for every task and cannot be overridden/],
      [NPM_APP, ["--env", "JUSTANAME"], /invalid --env 'JUSTANAME': write NAME=VALUE/],
      [NPM_APP, ["--constraint", "G@"], /invalid constraint 'G@': /],
      [NPM_APP, ["--app", "Bad_Name"], /invalid app name 'Bad_Name': app names are 2-32 lowercase letters/],
      [NPM_APP, ["--timeout", "0"], /invalid --timeout '0'/],
      [NPM_APP, ["--runtime", "vm"], /invalid --runtime 'vm': expected process or docker/],
      [NPM_APP, ["--port", "80"], /invalid --port '80': give a port from 1024 to 65535/],
    ];
    for (const [files, args, pattern] of cases) {
      const dir = appDir(`case${cases.findIndex((c) => c[0] === files && c[1] === args)}`, files);
      const result = await deploy(dir, ...args);
      expect(result.code, `${JSON.stringify(files)} ${args.join(" ")}`).toBe(1);
      expect(result.stdout).toBe("");
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(pattern);
    }
    expect(api.requests).toEqual([]);
  });

  it("fails with one line for a directory that does not exist, and for a name that cannot become an app", async () => {
    const base = tempDir();
    const missing = await runWithFakeArtifacts([...flags(), "deploy", "nope"], { cwd: base, configDir: configDir() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`zectre: error: cannot read ${join(base, "nope")}: no such directory\n`);
    const numeric = await deploy(appDir("1234"));
    expect(numeric.stderr).toMatch(/cannot make an app name out of the directory name '1234'; pass --app NAME/);
    expect(api.requests).toEqual([]);
  });

  it("exits 2 with a line naming the crashed task when tasks are not healthy by --timeout", async () => {
    api.taskScript = CRASHING_SCRIPT;
    const dir = appDir("web");
    const result = await deploy(dir, "--timeout", "1");
    expect(result.code).toBe(2);
    const task = api.apps.get("web")?.deployments[0]?.tasks[0]?.taskId;
    const id = api.apps.get("web")?.deployments[0]?.id;
    expect(result.stdout).toContain(`  ${task} on web-1: crashed: exited with code 1\n`);
    expect(result.stdout).not.toContain("is healthy");
    expect(result.stderr).toBe(`zectre: deployment ${id} is not healthy after 1s: 0 of 1 task healthy; ${task} on web-1: crashed: exited with code 1\n`);
  });

  it("exits 2 and says why when no node can take the tasks", async () => {
    api.taskScript = null;
    const result = await deploy(appDir("web"), "--timeout", "1", "--constraint", "G@role:gpu");
    expect(result.code).toBe(2);
    expect(result.stdout).toContain("  cannot place a task yet: no node matches the constraints\n");
    expect(result.stderr).toMatch(/is not healthy after 1s: 0 of 1 task healthy; cannot place: no node matches the constraints\n$/);
  });

  it("--detach returns right after the create, without opening the event stream", async () => {
    const result = await deploy(appDir("web"), "--detach");
    expect(result.code).toBe(0);
    const id = api.apps.get("web")?.deployments[0]?.id;
    expect(result.stdout).toMatch(new RegExp(`Deployment ${id}\nPreview: http://${id}\\.web\\.acme\\.localhost:47000\n$`));
    expect(api.requests.some((r) => r.path.endsWith("/events"))).toBe(false);
  });

  it("--format json prints one object at the end and keeps progress off stdout", async () => {
    const result = await deploy(appDir("web"), "--format", "json");
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(["deployment", "previewUrl", "appUrl", "layers", "result"]);
    expect(parsed["result"]).toBe("healthy");
    expect(parsed["appUrl"]).toBe("http://web.acme.localhost:47000");
    expect((parsed["deployment"] as { status: string; promoted: boolean }).status).toBe("healthy");
    expect((parsed["layers"] as unknown[]).length).toBe(2);
    expect(result.stderr).toMatch(/^Creating app web\n[\s\S]*on web-1: healthy \(127\.0\.0\.1:41000\)\n[\s\S]*is healthy\n/);

    const detached = await deploy(appDir("api"), "--format", "json", "--detach");
    expect((JSON.parse(detached.stdout) as { result: string }).result).toBe("created");
  });

  it("reopens a dropped event stream from the last event it saw and still sees the task through", async () => {
    api.taskScript = () => [
      { afterMs: 20, state: "starting" },
      { afterMs: 400, state: "healthy" },
    ];
    const dir = appDir("web");
    const running = deploy(dir);
    await until(() => api.apps.get("web")?.deployments[0]?.tasks[0]?.state === "starting", "the task to start");
    api.dropEventStreams();
    const result = await running;
    expect(result.code).toBe(0);
    const opens = api.requests.filter((r) => r.path.endsWith("/events")).map((r) => r.query.get("since"));
    expect(opens.length).toBeGreaterThanOrEqual(2);
    expect(opens[0]).toBeNull();
    // The second open resumes after the last event printed (app events: created, assigned, starting…).
    expect(Number(opens[1])).toBeGreaterThanOrEqual(3);
    // Nothing printed twice.
    const stateLines = lines(result.stdout).filter((line) => / on web-1: /.test(line));
    expect(stateLines.map((line) => line.replace(/^.*: /, ""))).toEqual(["assigned", "starting", "healthy (127.0.0.1:41000)"]);
  });

  it("Ctrl-C stops following (exit 1) and says the deployment carries on", async () => {
    api.taskScript = () => [{ afterMs: 20, state: "starting" }];
    let press: (() => void) | undefined;
    const dir = appDir("web");
    const running = runWithFakeArtifacts([...flags(), "deploy"], { cwd: dir, configDir: configDir(), onInterrupt: (handler) => (press = handler) });
    await until(() => api.apps.get("web")?.deployments[0]?.tasks[0]?.state === "starting" && press !== undefined, "the task to start");
    press?.();
    const result = await running;
    expect(result.code).toBe(1);
    const id = api.apps.get("web")?.deployments[0]?.id;
    expect(result.stderr).toBe(`\nzectre: stopped following deployment ${id}; it keeps deploying.\n  check on it:  zectre deployments web\n`);
  });

  it("a deployment of 0 replicas is done at once", async () => {
    const result = await deploy(appDir("web"), "--replicas", "0");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Waiting for 0 tasks to become healthy \(up to 120s\)\nDeployment d\w+ is healthy\n/);
  });

  it("a read-only token fails on the create with the server's words", async () => {
    await client().createApp("web");
    const result = await runWithFakeArtifacts([...flags(TOKENS.read), "deploy"], { cwd: appDir("web"), configDir: configDir() });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("zectre: error: this action needs the 'operate' scope; the token has 'read' (forbidden)\n");
  });
});

describe("zectre deploy, the shipped binary", () => {
  it("packs and uploads a real directory, and a redeploy reuses the deps layer by its lockfile", async () => {
    const dir = join(tempDir(), "hello");
    cpSync(join(import.meta.dirname, "../fixtures/hello-app"), dir, { recursive: true });
    writeTree(dir, {
      "package-lock.json": { name: "hello-app", lockfileVersion: 3, packages: {} },
      "node_modules/tiny/index.js": "export const tiny = 1;\n",
    });
    const run = () => runBinary([...flags(), "deploy", "--format", "json"], { cwd: dir, env: { ZECTRE_CONFIG_DIR: configDir() } });
    const first = await run();
    expect(first.code, first.stderr).toBe(0);
    const out = JSON.parse(first.stdout) as { layers: { layer: string; uploaded: boolean; reusedBy: string | null; digest: string }[]; result: string };
    expect(out.result).toBe("healthy");
    expect(out.layers.map((l) => [l.layer, l.uploaded])).toEqual([["app", true], ["deps", true]]);
    // The fake checked each upload's bytes against its digest; the deployment names exactly what was stored.
    expect([...api.artifacts.keys()].sort()).toEqual(out.layers.map((l) => l.digest).sort());
    expect((deploymentBodies()[0] as { artifacts: unknown[] }).artifacts).toHaveLength(2);

    writeFileSync(join(dir, "server.mjs"), `// v2\n${readFileSync(join(dir, "server.mjs"), "utf8")}`);
    const second = await run();
    expect(second.code, second.stderr).toBe(0);
    const again = JSON.parse(second.stdout) as typeof out;
    expect(again.layers.map((l) => [l.layer, l.uploaded, l.reusedBy])).toEqual([["app", true, null], ["deps", false, "lockfile"]]);
    expect(api.requests.filter((r) => r.method === "PUT").length).toBe(3);
  });
});

describe("deploy helpers", () => {
  it("makes directory names into app names", () => {
    expect(appNameFrom("My_Shop.v2")).toBe("my-shop-v2");
    expect(appNameFrom("web")).toBe("web");
    expect(appNameFrom("2fast-app")).toBe("fast-app");
    expect(appNameFrom("--x--y--")).toBe("x-y");
    expect(appNameFrom("a".repeat(40))).toBe("a".repeat(32));
    expect(appNameFrom(`${"a".repeat(31)}-bbb`)).toBe("a".repeat(31));
    expect(appNameFrom("1234")).toBeUndefined();
    expect(appNameFrom("x")).toBeUndefined();
  });

  it("the shipped binary knows deploy and its help", async () => {
    const result = await runBinary(["deploy", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: zectre deploy \[DIR\] \[--app NAME\]/);
    expect(result.stdout).toContain("zectre deploy ./web --app web --replicas 2 --health-path /healthz");
    const bad = await runBinary(["deploy", "--replicas"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("zectre: error: flag --replicas needs a value; see 'zectre deploy --help'\n");
  });
});
