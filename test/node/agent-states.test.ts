import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateNodeKey } from "../../agent/src/keys.ts";
import { Logger } from "../../agent/src/log.ts";
import { stateFunctions } from "../../agent/src/state-apply/function.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import { writeIdentity, writePrivateKey } from "../../agent/src/state/identity.ts";
import { StateTreeStore, statesUpdateHandler } from "../../agent/src/state/state-tree.ts";
import { ReturnMessage } from "../../protocol/jobs.ts";
import type { StatesUpdate } from "../../protocol/states.ts";
import { FakeControlPlane, until } from "./helpers/agent-control-plane.ts";
import { dispatchOf } from "./helpers/agent-jobs.ts";
import { runAgentCommand, startAgent, useAgentProcesses } from "./helpers/agent-run.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** `states.update`: the pushed state tree, cached in `<data-dir>/states` and swapped in atomically. */

const tempDir = useTempDirs();
useAgentProcesses();

const update = (version: string, files: Record<string, string>): StatesUpdate => ({ kind: "states.update", version, files });

/** Every file under a dir (dotfiles included), relative, sorted, with contents. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (sub: string) => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub === "" ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else out[rel] = readFileSync(join(dir, rel), "utf8");
    }
  };
  walk("");
  return out;
}

const V1 = { "top.yaml": `"*": [base]\n`, "base.yaml": "a: 1\n", "web/nginx.yaml": "b: 2\n" };
const V2 = { "top.yaml": `"*": [other]\n`, "other.yml": "c: 3\n" };

describe("the state tree store", () => {
  it("writes a tree with its version, and does nothing for the same version again", () => {
    const data = tempDir();
    const logs: Record<string, unknown>[] = [];
    const store = StateTreeStore.open(data);
    const handle = statesUpdateHandler(store, new Logger({ sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) }));
    expect(store.version()).toBeNull();

    handle(update("v1", V1));
    expect(snapshot(join(data, "states"))).toEqual({ ...V1, ".version": "v1\n" });
    expect(store.version()).toBe("v1");
    expect(store.files()).toEqual(["base.yaml", "top.yaml", "web/nginx.yaml"]);
    expect(logs.at(-1)).toMatchObject({ msg: "states updated", version: "v1", files: 3 });

    const before = readdirSync(data);
    handle(update("v1", { "top.yaml": "changed: true\n" }));
    expect(snapshot(join(data, "states"))).toEqual({ ...V1, ".version": "v1\n" });
    expect(readdirSync(data)).toEqual(before);
    expect(logs.at(-1)).toMatchObject({ msg: "states unchanged", version: "v1" });
  });

  it("replaces the whole tree with a new version: files no longer pushed disappear", () => {
    const data = tempDir();
    const store = StateTreeStore.open(data);
    expect(store.apply(update("v1", V1))).toBe(true);
    expect(store.apply(update("v2", V2))).toBe(true);
    expect(snapshot(join(data, "states"))).toEqual({ ...V2, ".version": "v2\n" });
    expect(existsSync(join(data, "states", "web"))).toBe(false);
    // No tmp or old dir stays behind.
    expect(readdirSync(data).sort()).toEqual(["states"]);
  });

  it("refuses a path that leaves the tree, writing nothing", () => {
    const data = tempDir();
    const store = StateTreeStore.open(data);
    store.apply(update("v1", V1));
    const handle = statesUpdateHandler(store, new Logger({ sink: () => {} }));
    for (const bad of ["../escape.yaml", "/etc/passwd.yaml", "a/../../b.yaml", ".version.yaml", "a//b.yaml", "a\\..\\b.yaml"]) {
      expect(() => handle(update("v2", { "ok.yaml": "x: 1\n", [bad]: "pwned: true\n" })), bad).toThrow(/refused state file path/);
    }
    expect(snapshot(join(data, "states"))).toEqual({ ...V1, ".version": "v1\n" });
    expect(readdirSync(data).sort()).toEqual(["states"]);
    expect(existsSync(join(data, "escape.yaml"))).toBe(false);
  });

  it("a failing rename mid-swap leaves the old tree in place, and the next update succeeds", () => {
    const data = tempDir();
    StateTreeStore.open(data).apply(update("v1", V1));
    // The second rename (new tree in) fails once; the in-process repair puts the old tree back.
    let calls = 0;
    const flaky = StateTreeStore.open(data, {
      rename: (from, to) => {
        calls++;
        if (calls === 2) throw Object.assign(new Error("EIO: simulated"), { code: "EIO" });
        renameSync(from, to);
      },
    });
    expect(() => flaky.apply(update("v2", V2))).toThrow(/simulated/);
    expect(snapshot(join(data, "states"))).toEqual({ ...V1, ".version": "v1\n" });
    expect(readdirSync(data).sort()).toEqual(["states"]);
    expect(flaky.apply(update("v2", V2))).toBe(true);
    expect(snapshot(join(data, "states"))).toEqual({ ...V2, ".version": "v2\n" });
  });

  for (const crashAt of [1, 2]) {
    it(`a crash at rename ${crashAt} of the swap (nothing runs after it) leaves the old tree after reboot`, () => {
      const data = tempDir();
      StateTreeStore.open(data).apply(update("v1", V1));
      // A "dead" process: the failing rename and every later one (including the repair) fail.
      let calls = 0;
      const dying = new StateTreeStore(data, {
        rename: (from, to) => {
          calls++;
          if (calls >= crashAt) throw new Error("crashed");
          renameSync(from, to);
        },
      });
      expect(() => dying.apply(update("v2", V2))).toThrow(/crashed/);
      // On disk now: the old tree in place (the repair could still delete the tmp dir), or aside with the new one unswapped.
      expect(readdirSync(data).sort()).toEqual(crashAt === 1 ? ["states"] : ["states.old", "states.v2.tmp"]);

      const booted = StateTreeStore.open(data);
      expect(snapshot(join(data, "states"))).toEqual({ ...V1, ".version": "v1\n" });
      expect(readdirSync(data).sort()).toEqual(["states"]);
      expect(booted.apply(update("v2", V2))).toBe(true);
      expect(snapshot(join(data, "states"))).toEqual({ ...V2, ".version": "v2\n" });
    });
  }

  it("a crash after the swap but before the old tree is deleted keeps the new tree; a torn tmp dir is dropped", () => {
    const data = tempDir();
    StateTreeStore.open(data).apply(update("v2", V2));
    // Leftovers as a crash would leave them: the old tree aside, a half-written tmp of another update.
    mkdirSync(join(data, "states.old"));
    writeFileSync(join(data, "states.old", "base.yaml"), "a: 1\n");
    mkdirSync(join(data, "states.v3.tmp"));
    writeFileSync(join(data, "states.v3.tmp", "top.yaml"), "half");
    const store = StateTreeStore.open(data);
    expect(store.version()).toBe("v2");
    expect(snapshot(join(data, "states"))).toEqual({ ...V2, ".version": "v2\n" });
    expect(readdirSync(data).sort()).toEqual(["states"]);
  });

  it("state.apply applies a state from the written tree", async () => {
    const data = tempDir();
    const out = join(tempDir(), "motd");
    const store = StateTreeStore.open(data);
    store.apply(update("v1", { "top.yaml": `"*": [motd]\n`, "motd.yaml": `motd:\n  file.managed:\n    - name: ${out}\n    - contents: pushed\n` }));
    const [apply] = stateFunctions({ tree: () => store.dir, node: () => ({ id: "web-1", grains: {} }) });
    const outcome = await apply?.run({}, { signal: new AbortController().signal, killGraceMs: 200 } as Parameters<NonNullable<typeof apply>["run"]>[1]);
    expect(outcome).toMatchObject({ success: true });
    expect(readFileSync(out, "utf8")).toBe("pushed");
  });
});

describe("states.update over the agent connection (zectre-agent run)", () => {
  let plane: FakeControlPlane;
  beforeEach(async () => {
    plane = await FakeControlPlane.start();
  });
  afterEach(() => plane.close());

  it("acks the action, caches the tree, and state.apply then applies from it; status shows the version", async () => {
    const key = generateNodeKey();
    plane.register("web-1", key.publicKey, "active");
    const dir = join(tempDir(), "agent");
    ensurePrivateDir(dir);
    const paths = dataDirPaths(dir);
    writePrivateKey(paths.key, key.privateKey);
    writeIdentity(paths, { v: 1, url: plane.url, org: plane.org, nodeId: "web-1", publicKey: key.publicKey, enrolledAt: new Date().toISOString(), state: "approved" });
    // A leftover from an update that crashed earlier: cleaned at boot.
    mkdirSync(join(dir, "states.old.tmp"));

    const agent = startAgent(["run", "--data-dir", dir], { ZECTRE_AGENT_BACKOFF_BASE_MS: "5", ZECTRE_AGENT_BACKOFF_CAP_MS: "50" });
    const session = await until(() => plane.sessions[0], "a session");
    await agent.waitForLog("cleaned up an interrupted state tree update");
    const out = join(tempDir(), "motd");
    plane.sendAction(session, "st1", update("abc123", {
      "top.yaml": `"web-*": [site.motd]\n`,
      "site/motd.yaml": `motd:\n  file.managed:\n    - name: ${out}\n    - contents: from the pushed tree\n`,
    }));
    const acked = () => plane.messages(session, "ack").some((ack) => Array.isArray(ack.ids) && ack.ids.includes("st1"));
    await until(acked, "the ack of the states.update");
    expect(await agent.waitForLog("states updated")).toMatchObject({ version: "abc123", files: 2 });
    expect(readFileSync(join(dir, "states", ".version"), "utf8")).toBe("abc123\n");

    const job = dispatchOf("state.apply");
    plane.sendAction(session, "j1", job);
    const sent = await until(() => plane.messages(session, "return").find((m) => m.jid === job.jid), "the state.apply return", 10_000);
    expect(ReturnMessage.parse(sent).return).toMatchObject({ success: true, retcode: 0 });
    expect(readFileSync(out, "utf8")).toBe("from the pushed tree");

    agent.child.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
    const status = await runAgentCommand(["status", "--data-dir", dir]);
    expect(status.stdout).toMatch(/^States: +version abc123, 2 file\(s\)$/m);
    const json = await runAgentCommand(["status", "--data-dir", dir, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ states: { version: "abc123", files: 2 } });
  });
});
