import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArtifactInfo } from "../../protocol/artifacts.ts";
import type { ArtifactRef } from "../../protocol/deployments.ts";
import { ed25519Signer } from "../../agent/src/keys.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { loadCredentials } from "../../agent/src/state/identity.ts";
import { ArtifactError, ArtifactStore } from "../../agent/src/tasks/artifacts.ts";
import { runAgentCommand } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";

interface Pushed {
  refs: ArtifactRef[];
  layers: Array<{ layer: string; digest: string; uploaded: boolean; reusedBy: string | null }>;
}

/** `zectre artifact push` into real R2 (local), and a real enrolled node identity downloading what it pushed. */
describe("artifacts end to end", () => {
  let plane: LocalControlPlane;
  let work: string;
  let app: string;
  let refs: ArtifactRef[] = [];
  const cli = (...args: string[]) => runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config") } });
  const push = async (): Promise<Pushed> => {
    const result = await cli("artifact", "push", app, "--format", "json");
    if (result.code !== 0) throw new Error(result.stderr);
    return JSON.parse(result.stdout) as Pushed;
  };
  const outcome = (pushed: Pushed) => pushed.layers.map((l) => [l.layer, l.uploaded, l.reusedBy]);

  beforeAll(async () => {
    plane = await startLocalControlPlane();
    work = mkdtempSync(join(tmpdir(), "zectre-e2e-artifacts-"));
    app = join(work, "app");
    const files: Record<string, string> = {
      "server.js": "console.log('v1')\n",
      "package.json": '{"name":"hello","dependencies":{"dep":"1.0.0"}}\n',
      "package-lock.json": '{"name":"hello","lockfileVersion":3,"packages":{}}\n',
      ".gitignore": "node_modules/\n",
      "node_modules/dep/package.json": '{"name":"dep","version":"1.0.0"}\n',
      "node_modules/dep/index.js": `module.exports = ${JSON.stringify("d".repeat(200_000))};\n`,
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(app, path)), { recursive: true });
      writeFileSync(join(app, path), text);
    }
  });

  afterAll(async () => {
    await plane?.stop();
    if (plane) removeControlPlane(plane);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("uploads both layers once, then only the app layer after a code change", async () => {
    const first = await push();
    expect(outcome(first)).toEqual([
      ["app", true, null],
      ["deps", true, null],
    ]);
    expect(outcome(await push())).toEqual([
      ["app", false, "digest"],
      ["deps", false, "lockfile"],
    ]);

    writeFileSync(join(app, "server.js"), "console.log('v2')\n");
    const changed = await push();
    expect(outcome(changed)).toEqual([
      ["app", true, null],
      ["deps", false, "lockfile"],
    ]);
    refs = changed.refs;

    const listed = await cli("artifact", "list", "--format", "json");
    const artifacts = (JSON.parse(listed.stdout) as { artifacts: ArtifactInfo[] }).artifacts;
    expect(artifacts.map((a) => a.layer).sort()).toEqual(["app", "app", "deps"]);
    const deps = artifacts.find((a) => a.layer === "deps");
    expect(deps?.digest).toBe(first.refs.find((r) => r.layer === "deps")?.digest);
    expect(deps?.lockfile).toMatch(/^[0-9a-f]{64}$/);
    const text = await cli("artifact", "list");
    expect(text.stdout).toMatch(/^DIGEST\s+LAYER\s+SIZE\s+UPLOADED\s+BY\n/);
    expect(text.stdout).toContain(deps?.digest.slice(0, 12));
  });

  it("a real enrolled node downloads, verifies and unpacks the layers with its own key; a revoked one cannot", async () => {
    const token = await cli("node", "token", "create", "--auto-approve", "--format", "json");
    expect(token.code).toBe(0);
    const dataDir = join(work, "agent");
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", (JSON.parse(token.stdout) as { token: string }).token, "--id", "art-1", "--data-dir", dataDir]);
    expect(enrolled.code).toBe(0);
    const { identity, privateKey } = loadCredentials(dataDirPaths(dataDir));
    const storeIn = (cache: string) =>
      new ArtifactStore({ cacheDir: join(work, cache), baseUrl: identity.url, org: identity.org, nodeId: identity.nodeId, signer: ed25519Signer(privateKey) });

    const dest = join(work, "unpacked");
    await storeIn("cache").unpack(refs, dest);
    expect(readFileSync(join(dest, "server.js"), "utf8")).toBe("console.log('v2')\n");
    expect(readFileSync(join(dest, "node_modules/dep/package.json"), "utf8")).toContain('"dep"');

    expect((await cli("node", "enroll", "revoke", "art-1")).code).toBe(0);
    const refused = await storeIn("cache-after-revoke").ensure(refs[0] as ArtifactRef).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ArtifactError);
    expect((refused as ArtifactError).code).toBe("unauthorized");
  });
});
