import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AGENT_SCRIPT, renderUnit, systemdQuote } from "../../agent/src/install.ts";
import { generateNodeKey } from "../../agent/src/keys.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import { writeIdentity, writePrivateKey } from "../../agent/src/state/identity.ts";
import { SettingsStore } from "../../agent/src/state/settings.ts";
import { FactsMessage } from "../../protocol/agent-wire.ts";
import type { EnrollmentState } from "../../protocol/nodes.ts";
import { FakeControlPlane, until } from "./helpers/agent-control-plane.ts";
import { AGENT_BIN, runAgentCommand, startAgent, useAgentProcesses } from "./helpers/agent-run.ts";
import { lines, useTempDirs } from "./helpers/run-cli.ts";

/** The real `agent/bin/zectre-agent.ts` as a child process, as systemd would run it. */

const tempDir = useTempDirs();
useAgentProcesses();
let plane: FakeControlPlane;

beforeEach(async () => {
  plane = await FakeControlPlane.start();
});
afterEach(() => plane.close());

/** Tiny backoff so reconnects take milliseconds. */
const FAST = { ZECTRE_AGENT_BACKOFF_BASE_MS: "5", ZECTRE_AGENT_BACKOFF_CAP_MS: "50" };

/** A data dir as `enroll` leaves it, for a node the fake control plane knows. */
function enrolledDir(state: EnrollmentState = "active", url = plane.url): string {
  const dir = join(tempDir(), "agent");
  ensurePrivateDir(dir);
  const paths = dataDirPaths(dir);
  const key = generateNodeKey();
  writePrivateKey(paths.key, key.privateKey);
  writeIdentity(paths, { v: 1, url, org: plane.org, nodeId: "web-1", publicKey: key.publicKey, enrolledAt: new Date().toISOString(), state: "approved" });
  plane.register("web-1", key.publicKey, state);
  return dir;
}

describe("zectre-agent run", () => {
  it("connects from its data dir, applies settings, and exits 0 on SIGTERM after closing with 1000", async () => {
    const dir = enrolledDir();
    const agent = startAgent(["run", "--data-dir", dir, "--fact", "zone=b"], FAST);
    const session = await until(() => plane.sessions[0], "a session");
    const facts = FactsMessage.parse(await until(() => plane.messages(session, "facts")[0], "facts"));
    expect(facts.facts.custom).toEqual({ zone: "b" });

    plane.sendAction(session, "a1", { kind: "settings.update", version: "v1", settings: { "log.level": "debug" } });
    await until(() => plane.messages(session, "ack").length === 1, "the ack");
    expect(SettingsStore.open(join(dir, "settings.json")).currentSettings()).toMatchObject({ version: "v1", settings: { "log.level": "debug" } });

    // status reads the same data dir without the network, while the agent runs.
    const status = await runAgentCommand(["status", "--data-dir", dir]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("Node:       web-1 (org acme)");
    expect(status.stdout).toMatch(/Settings: {3}version v1, 1 key\(s\), received /);

    agent.child.kill("SIGTERM");
    const result = await agent.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("");
    expect(await session.closed).toEqual({ code: 1000, reason: "agent stopping" });
    const logs = agent.logs();
    expect(logs.map((line) => line.msg)).toEqual(expect.arrayContaining(["starting", "connected", "settings updated", "stopping", "stopped"]));
    for (const line of logs) expect(line).toMatchObject({ ts: expect.any(String), level: expect.any(String), component: "agent", nodeId: "web-1" });
  });

  it("boots while the control plane is unreachable, keeps retrying, and still exits 0 on SIGINT", async () => {
    const dir = enrolledDir();
    SettingsStore.open(join(dir, "settings.json")).apply({ version: "cached", settings: { a: 1 } });
    const url = plane.url;
    await plane.close();
    const agent = startAgent(["run", "--data-dir", dir], FAST);
    await until(() => agent.logs().filter((line) => line.msg === "connection failed; retrying").length >= 3, "three retries");
    const retry = agent.logs().find((line) => line.msg === "connection failed; retrying");
    expect(retry).toMatchObject({ level: "warn", reason: `challenge failed: could not reach ${url}: connection refused (ECONNREFUSED)` });
    expect(agent.logs().find((line) => line.msg === "starting")).toMatchObject({ settingsVersion: "cached", url });
    expect(agent.child.exitCode).toBeNull();

    agent.child.kill("SIGINT");
    expect((await agent.exited).code).toBe(0);
    plane = await FakeControlPlane.start();
  });

  it("exits 3 on a 403 revoked from the challenge, without retrying", async () => {
    const dir = enrolledDir();
    plane.challengeReplies.push({ status: 403, body: { error: { code: "forbidden", message: "node is revoked", details: { state: "revoked" } } } });
    const result = await startAgent(["run", "--data-dir", dir], FAST).exited;
    expect(result.code).toBe(3);
    expect(result.stderr).toBe("zectre-agent: error: the control plane revoked this node: node is revoked\n");
    expect(plane.requests.map((r) => r.path)).toEqual(["/api/v1/agent/challenge"]);
    expect(result.stdout).toContain('"level":"error"');
  });

  it("exits 3 when the server closes the socket with 4003", async () => {
    const dir = enrolledDir();
    const agent = startAgent(["run", "--data-dir", dir], FAST);
    const session = await until(() => plane.sessions[0], "a session");
    session.socket.close(4003, "revoked");
    const result = await agent.exited;
    expect(result.code).toBe(3);
    expect(lines(result.stderr)).toEqual(["zectre-agent: error: the control plane revoked this node: revoked"]);
    expect(plane.sessions).toHaveLength(1);
  });

  it("refuses to start without an identity", async () => {
    const dir = tempDir();
    const result = await runAgentCommand(["run", "--data-dir", dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`zectre-agent: error: not enrolled: no identity in ${dir}; run 'zectre-agent enroll --url URL --token TOKEN' first\n`);
  });
});

describe("zectre-agent install, status, help", () => {
  it("writes a 0644 systemd unit that runs this agent with this Node", async () => {
    const dir = enrolledDir();
    const unitPath = join(tempDir(), "zectre-agent.service");
    const result = await runAgentCommand(["install", "--data-dir", dir, "--write", "--path", unitPath]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`Wrote ${unitPath}.\nNext: systemctl daemon-reload && systemctl enable --now zectre-agent\n`);
    expect(statSync(unitPath).mode & 0o777).toBe(0o644);
    const unit = readFileSync(unitPath, "utf8");
    expect(unit).toContain(`ExecStart=${process.execPath} ${AGENT_BIN} run --data-dir ${dir}\n`);
    expect(unit).toMatch(/^Restart=always$/m);
    expect(unit).toMatch(/^RestartSec=5$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=3$/m);
    expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
    // A custom data dir is not systemd's to create.
    expect(unit).not.toContain("StateDirectory");

    const printed = await runAgentCommand(["install", "--data-dir", dir]);
    expect(printed.stdout).toBe(unit);
  });

  it("lets systemd create the default data dir, and quotes odd paths", () => {
    const unit = renderUnit({ nodePath: "/usr/bin/node", scriptPath: AGENT_SCRIPT, dataDir: "/var/lib/zectre-agent" });
    expect(unit).toMatch(/^StateDirectory=zectre-agent$/m);
    expect(unit).toMatch(/^StateDirectoryMode=0700$/m);
    expect(unit).not.toMatch(/^(ProtectSystem|NoNewPrivileges|ProtectHome)=/m);
    expect(systemdQuote("/opt/my agent/100%$x")).toBe('"/opt/my agent/100%%$$x"');
    expect(systemdQuote("/usr/bin/node")).toBe("/usr/bin/node");
  });

  it("status fails clearly when nothing is enrolled; --version and --help work", async () => {
    const status = await runAgentCommand(["status", "--data-dir", join(tempDir(), "none")]);
    expect(status.code).toBe(1);
    expect(lines(status.stderr)).toHaveLength(1);
    expect(status.stderr).toMatch(/^zectre-agent: error: not enrolled: no identity in /);

    const pkg = JSON.parse(readFileSync(join(AGENT_BIN, "../../../package.json"), "utf8")) as { version: string };
    expect(await runAgentCommand(["--version"])).toMatchObject({ code: 0, stdout: `zectre-agent ${pkg.version}\n` });
    const help = await runAgentCommand(["run", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: zectre-agent run /);
    const unknown = await runAgentCommand(["frobnicate"]);
    expect(unknown).toMatchObject({ code: 1, stderr: "zectre-agent: error: unknown command 'frobnicate'; see 'zectre-agent --help'\n" });
  });
});
