import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * What a person sees from the deployment commands, end to end: a real control plane,
 * one real agent, the real CLI in text mode. (test/e2e/deploy.test.ts covers the
 * scheduling side: promote, rollback, scale, crashes and lost nodes.)
 */

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODE = "cli-a";


describe("the deployment CLI end to end", () => {
  let fleet: Fleet;
  let dir: string;
  let home: string;
  /** The deployment whose task the later tests talk to. */
  let current: string;
  const auth = () => ["--url", fleet.plane.apiUrl, "--token", fleet.plane.adminToken()];
  const cli = (...args: string[]) => runCli([...auth(), ...args], { cwd: home, env: { ZECTRE_CONFIG_DIR: join(home, "config") } });
  const deployment = async (id: string) => (await fleet.api("GET", `/api/v1/deployments/${id}`)).body.deployment as DeploymentRecord;

  beforeAll(async () => {
    fleet = await startFleet([NODE], { heartbeatSeconds: 1 });
    await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${NODE}`)).body, (b) => (b.node as { online?: boolean })?.online === true, "the node online");
    home = mkdtempSync(join(tmpdir(), "zectre-deploy-cli-"));
    dir = join(home, "shop");
    cpSync(FIXTURE, dir, { recursive: true });
    writeFileSync(join(dir, "zectre.json"), JSON.stringify({ command: "node server.mjs", healthCheck: { type: "http", path: "/healthz" }, env: { GREETING: "zectre.json" } }));
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it("deploy creates the app, prints the task coming up, and the task serves the app", async () => {
    const res = await cli("deploy", dir);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    const out = res.stdout.split("\n");
    expect(out[0]).toBe("Creating app shop");
    const id = /^Deployment (d[0-9a-z]{12})$/m.exec(res.stdout)?.[1] ?? "";
    expect(id).not.toBe("");
    const preview = /^Preview: (\S+)$/m.exec(res.stdout)?.[1] ?? "";
    expect(preview).toBe(`http://${id}.shop.default.localhost:${fleet.plane.proxyPort}`);
    expect(res.stdout).toMatch(new RegExp(`^  t[0-9a-z]{12} on ${NODE}: healthy \\(127\\.0\\.0\\.1:\\d+\\)$`, "m"));
    expect(res.stdout).toContain(`Deployment ${id} is healthy\nPromoted: http://shop.default.localhost:${fleet.plane.proxyPort} serves it\n`);
    // Packing and upload progress goes to stderr.
    expect(res.stderr).toMatch(/uploading app/);

    current = id;
    // The proxy does not route preview hosts yet (workers/proxy answers 404 for every host), so ask the task directly.
    const port = /^  t[0-9a-z]{12} on cli-a: healthy \(127\.0\.0\.1:(\d+)\)$/m.exec(res.stdout)?.[1];
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("hello from zectre.json\n");

    const list = await cli("deployments", "shop");
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+shop\\s+healthy\\s+1/1\\s+yes\\s+`, "m"));
  });

  it("env set keeps a secret's value to itself, and the next deployment's task gets it", async () => {
    const set = await cli("env", "set", "shop", "API_KEY=k-123-secret", "--secret");
    expect(set).toMatchObject({ code: 0, stdout: "Set API_KEY on shop (secret)\n" });
    const list = await cli("env", "list", "shop");
    expect(list.stdout).toMatch(/^API_KEY\s+••••••\s+yes\s+/m);
    expect(list.stdout).not.toContain("k-123-secret");
    const revealed = await cli("env", "list", "shop", "--reveal");
    expect(revealed.stdout).toMatch(/^API_KEY\s+k-123-secret\s+yes\s+/m);

    const res = await cli("deploy", dir, "--format", "json", "--promote");
    expect(res.code, res.stderr).toBe(0);
    const { deployment: created } = JSON.parse(res.stdout) as { deployment: DeploymentRecord };
    current = created.id;
    const task = (await deployment(created.id)).tasks.find((t) => t.state === "healthy");
    const env = JSON.parse(await (await fetch(`http://127.0.0.1:${task?.hostPort}/env`)).text()) as Record<string, string>;
    expect(env["API_KEY"]).toBe("k-123-secret");
    expect(env["GREETING"]).toBe("zectre.json");
  });

  it("logs -f prints the app's output live until Ctrl-C", async () => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "cli/bin/zectre.ts"), ...auth(), "logs", "shop", "-f", "--since", "10m"], {
      cwd: home,
      env: { PATH: process.env.PATH ?? "", HOME: home, NO_COLOR: "1", ZECTRE_CONFIG_DIR: join(home, "config") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let seen = "";
    child.stdout.on("data", (chunk: Buffer) => (seen += chunk.toString("utf8")));
    const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
    await eventually(async () => seen, (text) => text.includes("hello-app listening on"), "the backlog");
    // A request now shows up as a new line while following.
    const task = (await deployment(current)).tasks.find((t) => t.state === "healthy");
    await fetch(`http://127.0.0.1:${task?.hostPort}/followed-live`);
    await eventually(async () => seen, (text) => text.includes("GET /followed-live"), "the live line");
    expect(seen).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ ${NODE}/t[0-9a-z]{12} ! hello-app listening on 127\\.0\\.0\\.1:\\d+$`, "m"));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
  });

  it("a deployment whose command keeps crashing ends in exit 2 with a line that says so", async () => {
    const res = await cli("deploy", dir, "--command", "node -e 'process.exit(3)'", "--timeout", "8");
    expect(res.code, res.stdout).toBe(2);
    expect(res.stdout).toMatch(/: crashed/);
    const lines = res.stderr.split("\n").filter((line) => line.startsWith("zectre: "));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^zectre: deployment d[0-9a-z]{12} is not healthy after 8s: 0 of 1 task healthy; t[0-9a-z]{12} on cli-a: (crashed|starting)/);
  });
});
