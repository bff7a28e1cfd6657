import { createPublicKey, sign, verify } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { publicKeyOf } from "../../agent/src/keys.ts";
import { type AgentIo, main } from "../../agent/src/main.ts";
import { readPrivateKey } from "../../agent/src/state/identity.ts";
import { fromBase64Url } from "../../protocol/base64url.ts";
import { EnrollBody, Facts, sanitizeNodeId } from "../../protocol/nodes.ts";
import { FakeControlPlane } from "./helpers/agent-control-plane.ts";
import { type AgentResult, runAgentCommand, useAgentProcesses } from "./helpers/agent-run.ts";
import { lines, useTempDirs } from "./helpers/run-cli.ts";

const tempDir = useTempDirs();
useAgentProcesses();
let plane: FakeControlPlane;
let dataDir: string;

beforeEach(async () => {
  plane = await FakeControlPlane.start();
  dataDir = join(tempDir(), "agent");
});
afterEach(() => plane.close());

const mode = (path: string) => statSync(path).mode & 0o777;

function expectOneErrorLine(result: AgentResult, pattern: RegExp): void {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe("");
  expect(lines(result.stderr)).toHaveLength(1);
  expect(result.stderr).toMatch(/^zectre-agent: error: /);
  expect(result.stderr).toMatch(pattern);
}

/** `main` in this process: same code as the binary, without a child's start-up time. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: AgentIo = {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
    env: {},
    uid: 1000,
    home: tempDir(),
    execPath: process.execPath,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

describe("zectre-agent enroll", () => {
  it("sends the public key and facts, keeps a 0600 private key and writes the identity", async () => {
    const result = await runAgentCommand(["enroll", "--url", `${plane.url}/`, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir, "--fact", "rack=r1"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);

    expect(plane.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /api/v1/agent/enroll"]);
    const body = EnrollBody.parse(plane.requests[0]?.body);
    expect(body).toMatchObject({ v: 1, token: "zet_good", nodeId: "web-1" });
    expect(Object.keys(plane.requests[0]?.body as object).sort()).toEqual(["facts", "nodeId", "publicKey", "token", "v"]);
    expect(Facts.parse(body.facts).custom).toEqual({ rack: "r1" });
    expect(fromBase64Url(body.publicKey)).toHaveLength(32);

    const keyPath = join(dataDir, "node.key");
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(keyPath)).toBe(0o600);
    const pem = readFileSync(keyPath, "utf8");
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    // The key on disk is the one whose public half the server got, and it signs verifiably.
    const privateKey = readPrivateKey(keyPath);
    if (!privateKey) throw new Error("no key");
    expect(publicKeyOf(privateKey)).toBe(body.publicKey);
    const serverKey = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: body.publicKey }, format: "jwk" });
    expect(verify(null, Buffer.from("hello"), serverKey, sign(null, Buffer.from("hello"), privateKey))).toBe(true);
    // The private key is nowhere in what was sent.
    expect(JSON.stringify(plane.requests)).not.toContain(pem.split("\n")[1]);

    const identityPath = join(dataDir, "identity.json");
    expect(mode(identityPath)).toBe(0o600);
    const identity = JSON.parse(readFileSync(identityPath, "utf8")) as Record<string, unknown>;
    expect(identity).toEqual({ v: 1, url: plane.url, org: "acme", nodeId: "web-1", publicKey: body.publicKey, enrolledAt: expect.any(String), state: "pending" });
    expect(Number.isNaN(Date.parse(String(identity.enrolledAt)))).toBe(false);

    expect(result.stdout).toContain("Enrolled node 'web-1' in org 'acme'");
    expect(result.stdout).toContain("an admin must approve it: zectre node enroll approve web-1");
    expect(result.stdout).toContain(`zectre-agent run --data-dir ${dataDir}`);
  });

  it("gives a 409 (id taken by another key) as one error line and exit 1", async () => {
    plane.register("web-1", "A".repeat(43));
    const result = await runAgentCommand(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expectOneErrorLine(result, /node id 'web-1' is taken by another key \(conflict\).*choose another with --id/);
    expect(existsSync(join(dataDir, "identity.json"))).toBe(false);
  });

  it("gives a 401 (bad, expired or used-up token) as one error line and exit 1", async () => {
    const result = await runAgentCommand(["enroll", "--url", plane.url, "--token", "zet_bad", "--id", "web-1", "--data-dir", dataDir]);
    expectOneErrorLine(result, /enrollment token is invalid, expired or used up \(unauthorized\)/);
    expect(existsSync(join(dataDir, "identity.json"))).toBe(false);
  });

  it("defaults the node id to the host name and tells the next step for an approved node", async () => {
    const approving = await FakeControlPlane.start({ enrollState: "approved" });
    try {
      const result = await inProcess(["enroll", "--url", approving.url, "--token", "zet_good", "--data-dir", dataDir]);
      expect(result.stderr).toBe("");
      expect(EnrollBody.parse(approving.requests[0]?.body).nodeId).toBe(sanitizeNodeId(hostname()));
      expect(result.stdout).toContain("(state: approved)");
      expect(result.stdout).toContain("Next: start the agent:");
      expect(result.stdout).not.toContain("enroll approve");
    } finally {
      await approving.close();
    }
  });

  it("refuses an invalid --id before touching the network or the disk", async () => {
    const result = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id=-bad id", "--data-dir", dataDir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "zectre-agent: error: invalid node id '-bad id': node ids start with a letter or digit and use only letters, digits, '_' and '-'\n",
    );
    expect(plane.requests).toEqual([]);
    expect(existsSync(dataDir)).toBe(false);
  });

  it("refuses to overwrite an existing identity unless --force, and --force swaps the key only on success", async () => {
    const first = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expect(first.code).toBe(0);
    const keyBefore = readFileSync(join(dataDir, "node.key"), "utf8");
    const identityBefore = readFileSync(join(dataDir, "identity.json"), "utf8");

    const again = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^zectre-agent: error: already enrolled as node 'web-1' in org 'acme' .*pass --force/);
    expect(readFileSync(join(dataDir, "node.key"), "utf8")).toBe(keyBefore);

    // A refused re-enrollment leaves the working identity and key alone.
    const refused = await inProcess(["enroll", "--url", plane.url, "--token", "zet_bad", "--id", "web-2", "--data-dir", dataDir, "--force"]);
    expect(refused.code).toBe(1);
    expect(readFileSync(join(dataDir, "node.key"), "utf8")).toBe(keyBefore);
    expect(readFileSync(join(dataDir, "identity.json"), "utf8")).toBe(identityBefore);

    const forced = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-2", "--data-dir", dataDir, "--force"]);
    expect(forced.stderr).toBe("");
    expect(forced.code).toBe(0);
    const keyAfter = readFileSync(join(dataDir, "node.key"), "utf8");
    expect(keyAfter).not.toBe(keyBefore);
    expect(existsSync(join(dataDir, "node.key.new"))).toBe(false);
    const identity = JSON.parse(readFileSync(join(dataDir, "identity.json"), "utf8")) as { nodeId: string; publicKey: string };
    expect(identity.nodeId).toBe("web-2");
    expect(identity.publicKey).toBe(publicKeyOf(readPrivateKey(join(dataDir, "node.key")) ?? fail()));
  });

  it("reuses the key of an enrollment whose answer was lost, instead of colliding with itself", async () => {
    // The server registers the node, but the agent never hears back.
    plane.enrollReply = { status: 503, body: { error: { code: "unavailable", message: "try again" } } };
    const lost = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toBe("zectre-agent: error: enrollment refused: try again (unavailable)\n");
    const key = readPrivateKey(join(dataDir, "node.key")) ?? fail();
    plane.register("web-1", publicKeyOf(key), "pending");

    const retry = await inProcess(["enroll", "--url", plane.url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expect(retry.stderr).toBe("");
    expect(retry.stdout).toContain("Reused the key from an earlier, unfinished enrollment.");
    expect(EnrollBody.parse(plane.requests[1]?.body).publicKey).toBe(publicKeyOf(key));
  });

  it("says so in one line when the control plane is unreachable", async () => {
    const url = plane.url;
    await plane.close();
    const result = await inProcess(["enroll", "--url", url, "--token", "zet_good", "--id", "web-1", "--data-dir", dataDir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`zectre-agent: error: could not reach ${url}: connection refused (ECONNREFUSED)\n`);
    plane = await FakeControlPlane.start();
  });

  it("needs --url and --token", async () => {
    const result = await inProcess(["enroll", "--token", "zet_good", "--data-dir", dataDir]);
    expect(result).toEqual({ code: 1, stdout: "", stderr: "zectre-agent: error: missing required flag --url; see 'zectre-agent enroll --help'\n" });
  });
});

function fail(): never {
  throw new Error("expected a key");
}
