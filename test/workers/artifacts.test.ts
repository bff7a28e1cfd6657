import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type ArtifactInfo, NODE_AUTH_HEADERS, nodeRequestSigningInput } from "../../protocol/artifacts.ts";
import { toBase64Url } from "../../protocol/base64url.ts";
import { buildApiApp } from "../../workers/api/app.ts";
import { artifactMaxBytes, DEFAULT_ARTIFACT_MAX_BYTES } from "../../workers/api/routes/artifacts.ts";
import { enroll, enrollmentToken, type TestAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return bytes;
}

interface Layer {
  bytes: Uint8Array;
  digest: string;
}

async function layer(size = 1000): Promise<Layer> {
  const bytes = randomBytes(size);
  return { bytes, digest: await sha256Hex(bytes) };
}

function putRequest(token: string, digest: string, body: BodyInit | null, query = "layer=app", headers: Record<string, string> = {}): Request {
  return new Request(`http://api.test/api/v1/artifacts/${digest}?${query}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, ...headers },
    body,
  });
}

async function put(token: string, digest: string, bytes: Uint8Array, query = "layer=app") {
  const res = await exports.default.fetch(putRequest(token, digest, bytes, query));
  return { status: res.status, body: (await res.json()) as { artifact: ArtifactInfo; created: boolean; error?: { code: string } } };
}

async function head(token: string, digest: string): Promise<number> {
  const res = await exports.default.fetch(
    new Request(`http://api.test/api/v1/artifacts/${digest}`, { method: "HEAD", headers: { authorization: `Bearer ${token}` } }),
  );
  return res.status;
}

describe("R2's own digest check (the upload route relies on it)", () => {
  it("local R2 refuses a put whose sha256 does not match, and stores nothing", async () => {
    const { bytes, digest } = await layer(64);
    await expect(env.ARTIFACTS.put("probe/wrong", bytes, { sha256: "0".repeat(64) })).rejects.toThrow(/SHA-256/);
    expect(await env.ARTIFACTS.head("probe/wrong")).toBeNull();
    const stored = await env.ARTIFACTS.put("probe/right", bytes, { sha256: digest });
    expect(stored?.checksums.toJSON().sha256).toBe(digest);
  });
});

describe("uploads", () => {
  it("stores a layer once: 201 created, then 200 not created without reading the body", async () => {
    const org = await createOrg("art");
    const { bytes, digest } = await layer();
    expect(await head(org.adminToken, digest)).toBe(404);

    const first = await put(org.adminToken, digest, bytes);
    expect(first.status).toBe(201);
    expect(first.body.created).toBe(true);
    expect(first.body.artifact).toMatchObject({ digest, size: bytes.byteLength, layer: "app", lockfile: null, uploadedBy: "admin" });
    expect(Date.parse(first.body.artifact.uploadedAt)).not.toBeNaN();
    expect(await head(org.adminToken, digest)).toBe(200);

    // A second upload with a wrong body is never read: the digest is already stored.
    const second = await put(org.adminToken, digest, new Uint8Array(3));
    expect(second.status).toBe(200);
    expect(second.body).toEqual({ artifact: first.body.artifact, created: false });

    const shown = await call<{ artifact: ArtifactInfo }>("GET", `/api/v1/artifacts/${digest}`, { token: org.adminToken });
    expect(shown.status).toBe(200);
    expect(shown.body.artifact).toEqual(first.body.artifact);
    const object = await env.ARTIFACTS.get(`${org.name}/sha256/${digest}`);
    expect(new Uint8Array(await (object as R2ObjectBody).arrayBuffer())).toEqual(bytes);
  });

  it("refuses bytes that do not hash to the digest (400 digest_mismatch) and stores nothing", async () => {
    const org = await createOrg("art");
    const { digest } = await layer();
    const res = await put(org.adminToken, digest, randomBytes(1000));
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe("digest_mismatch");
    expect(await head(org.adminToken, digest)).toBe(404);
    expect(await env.ARTIFACTS.head(`${org.name}/sha256/${digest}`)).toBeNull();
  });

  it("needs a Content-Length (411)", async () => {
    const org = await createOrg("art");
    const { bytes, digest } = await layer();
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
    const res = await exports.default.fetch(putRequest(org.adminToken, digest, stream));
    expect(res.status).toBe(411);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("length_required");
  });

  it("refuses a layer over ARTIFACT_MAX_BYTES with 413 and stores nothing", async () => {
    const org = await createOrg("art");
    const { bytes, digest } = await layer(17);
    const app = buildApiApp();
    // Called without the runtime's HTTP layer, so the length header must be set by hand.
    const request = () => putRequest(org.adminToken, digest, bytes, "layer=app", { "content-length": "17" });
    const ctx = createExecutionContext();
    const res = await app.fetch(request(), { ...env, ARTIFACT_MAX_BYTES: "16" }, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
    expect(await head(org.adminToken, digest)).toBe(404);

    const atLimit = await app.fetch(request(), { ...env, ARTIFACT_MAX_BYTES: "17" }, createExecutionContext());
    expect(atLimit.status).toBe(201);
  });

  it("refuses a body shorter or longer than its Content-Length (400) and stores nothing", async () => {
    const org = await createOrg("art");
    const { bytes, digest } = await layer(100);
    const app = buildApiApp();
    for (const declared of ["150", "50"]) {
      const request = putRequest(org.adminToken, digest, bytes, "layer=app", { "content-length": declared });
      const res = await app.fetch(request, env, createExecutionContext());
      expect(res.status).toBe(400);
      expect(await errorCode(res)).toBe("bad_request");
    }
    expect(await head(org.adminToken, digest)).toBe(404);
  });

  it("reads the limit from ARTIFACT_MAX_BYTES, 100 MB when unset or nonsense", () => {
    expect(artifactMaxBytes({ ARTIFACT_MAX_BYTES: "2048" })).toBe(2048);
    expect(artifactMaxBytes({})).toBe(DEFAULT_ARTIFACT_MAX_BYTES);
    expect(artifactMaxBytes({ ARTIFACT_MAX_BYTES: "lots" })).toBe(DEFAULT_ARTIFACT_MAX_BYTES);
    expect(artifactMaxBytes({ ARTIFACT_MAX_BYTES: "-5" })).toBe(DEFAULT_ARTIFACT_MAX_BYTES);
    expect(DEFAULT_ARTIFACT_MAX_BYTES).toBe(104_857_600);
  });

  it("checks scope, digest and query", async () => {
    const org = await createOrg("art");
    const reader = await createToken(org.adminToken, "reader", "read");
    const { bytes, digest } = await layer();
    expect((await put(reader, digest, bytes)).status).toBe(403);
    expect((await put(org.adminToken, "ABC", bytes)).status).toBe(400);
    expect((await put(org.adminToken, digest, bytes, "layer=lib")).status).toBe(400);
    expect((await put(org.adminToken, digest, bytes, `layer=app&lockfile=${"a".repeat(64)}`)).status).toBe(400);
    expect((await put(org.adminToken, digest, bytes, "")).status).toBe(400);
    expect(await head(org.adminToken, "not-a-digest")).toBe(404);
    expect((await call("GET", `/api/v1/artifacts/${digest}`)).status).toBe(401);
  });
});

describe("listing", () => {
  it("lists an org's layers, filters by layer, lockfile and prefix, and pages with a cursor", async () => {
    const org = await createOrg("art");
    const app = await layer();
    const deps = await layer();
    const lockfile = "b".repeat(64);
    expect((await put(org.adminToken, app.digest, app.bytes)).status).toBe(201);
    const uploaded = await put(org.adminToken, deps.digest, deps.bytes, `layer=deps&lockfile=${lockfile}`);
    expect(uploaded.body.artifact).toMatchObject({ layer: "deps", lockfile });

    type Page = { artifacts: ArtifactInfo[]; cursor?: string };
    const list = async (query: string) => (await call<Page>("GET", `/api/v1/artifacts${query}`, { token: org.adminToken })).body;
    const all = await list("");
    expect(all.artifacts.map((a) => a.digest).sort()).toEqual([app.digest, deps.digest].sort());
    expect(all.cursor).toBeUndefined();
    expect((await list("?layer=app")).artifacts.map((a) => a.digest)).toEqual([app.digest]);
    expect((await list(`?layer=deps&lockfile=${lockfile}`)).artifacts).toEqual([uploaded.body.artifact]);
    expect((await list(`?layer=deps&lockfile=${"c".repeat(64)}`)).artifacts).toEqual([]);
    expect((await list(`?prefix=${app.digest.slice(0, 10)}`)).artifacts.map((a) => a.digest)).toEqual([app.digest]);

    const first = await list("?limit=1");
    expect(first.artifacts).toHaveLength(1);
    expect(first.cursor).toBeTypeOf("string");
    const second = await list(`?limit=1&cursor=${encodeURIComponent(first.cursor as string)}`);
    expect(second.artifacts).toHaveLength(1);
    expect(second.artifacts[0]?.digest).not.toBe(first.artifacts[0]?.digest);

    expect((await call("GET", "/api/v1/artifacts?limit=0", { token: org.adminToken })).status).toBe(400);
  });

  it("re-uploading a stored deps layer under a new lockfile makes it findable by that lockfile too", async () => {
    const org = await createOrg("art");
    const deps = await layer();
    await put(org.adminToken, deps.digest, deps.bytes, `layer=deps&lockfile=${"1".repeat(64)}`);
    const again = await put(org.adminToken, deps.digest, deps.bytes, `layer=deps&lockfile=${"2".repeat(64)}`);
    expect(again.body.created).toBe(false);
    const found = await call<{ artifacts: ArtifactInfo[] }>("GET", `/api/v1/artifacts?lockfile=${"2".repeat(64)}`, { token: org.adminToken });
    expect(found.body.artifacts.map((a) => a.digest)).toEqual([deps.digest]);
  });

  it("keeps tenants apart: another org's layer is a 404 and absent from its list", async () => {
    const owner = await createOrg("art");
    const other = await createOrg("art");
    const { bytes, digest } = await layer();
    await put(owner.adminToken, digest, bytes);
    expect(await head(other.adminToken, digest)).toBe(404);
    expect((await call("GET", `/api/v1/artifacts/${digest}`, { token: other.adminToken })).status).toBe(404);
    expect((await call<{ artifacts: unknown[] }>("GET", "/api/v1/artifacts", { token: other.adminToken })).body.artifacts).toEqual([]);
    // The other org uploads the same bytes: its own copy, with its own record.
    expect((await put(other.adminToken, digest, bytes)).body.created).toBe(true);
  });
});

// ---- node-signed downloads ----

interface SigningNode extends TestAgent {
  signRequest(org: string, method: string, path: string, timestamp: number): Promise<string>;
}

async function signingNode(nodeId: string): Promise<SigningNode> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = (await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer;
  const signBytes = async (data: Uint8Array) => toBase64Url(new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, data)));
  return {
    nodeId,
    publicKey: toBase64Url(new Uint8Array(raw)),
    sign: () => Promise.reject(new Error("not used here")),
    signRequest: (org, method, path, timestamp) => signBytes(nodeRequestSigningInput(org, nodeId, method, path, timestamp)),
  };
}

async function enrolledNode(adminToken: string, nodeId: string, autoApprove = true): Promise<SigningNode> {
  const node = await signingNode(nodeId);
  const res = await enroll(node, await enrollmentToken(adminToken, { autoApprove }));
  if (res.status !== 201) throw new Error(`enroll: ${JSON.stringify(res.body)}`);
  return node;
}

async function download(org: string, node: SigningNode, digest: string, tweak: { timestamp?: number; signature?: string; signedPath?: string } = {}) {
  const path = `/api/v1/agent/artifacts/${digest}`;
  const timestamp = tweak.timestamp ?? Date.now();
  const signature = tweak.signature ?? (await node.signRequest(org, "GET", tweak.signedPath ?? path, timestamp));
  return exports.default.fetch(
    new Request(`http://api.test${path}`, {
      headers: {
        [NODE_AUTH_HEADERS.org]: org,
        [NODE_AUTH_HEADERS.node]: node.nodeId,
        [NODE_AUTH_HEADERS.timestamp]: String(timestamp),
        [NODE_AUTH_HEADERS.signature]: signature,
      },
    }),
  );
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe("agent downloads", () => {
  it("streams the layer to a node that signs with its own key", async () => {
    const org = await createOrg("dl");
    const node = await enrolledNode(org.adminToken, "web-1");
    const { bytes, digest } = await layer(5000);
    await put(org.adminToken, digest, bytes);
    const res = await download(org.name, node, digest);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-zectre-digest")).toBe(digest);
    expect(res.headers.get("content-length")).toBe("5000");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
    // A stored layer that is not there is a 404 after authentication.
    const missing = await download(org.name, node, "e".repeat(64));
    expect(missing.status).toBe(404);
  });

  it("refuses bad signatures, signatures for another path, stale or future timestamps, and missing headers", async () => {
    const org = await createOrg("dl");
    const node = await enrolledNode(org.adminToken, "web-1");
    const { bytes, digest } = await layer();
    await put(org.adminToken, digest, bytes);

    const impostor = await signingNode("web-1");
    const forged = await download(org.name, node, digest, { signature: await impostor.signRequest(org.name, "GET", `/api/v1/agent/artifacts/${digest}`, Date.now()) });
    expect(forged.status).toBe(401);
    expect(await errorCode(forged)).toBe("unauthorized");

    expect((await download(org.name, node, digest, { signedPath: `/api/v1/agent/artifacts/${"f".repeat(64)}` })).status).toBe(401);
    expect((await download(org.name, node, digest, { timestamp: Date.now() - 6 * 60_000 })).status).toBe(401);
    expect((await download(org.name, node, digest, { timestamp: Date.now() + 6 * 60_000 })).status).toBe(401);
    expect((await download(org.name, node, digest, { timestamp: Date.now() - 60_000 })).status).toBe(200);

    const bare = await exports.default.fetch(new Request(`http://api.test/api/v1/agent/artifacts/${digest}`));
    expect(bare.status).toBe(401);
    // An API token is not a node credential.
    const withToken = await exports.default.fetch(
      new Request(`http://api.test/api/v1/agent/artifacts/${digest}`, { headers: { authorization: `Bearer ${org.adminToken}` } }),
    );
    expect(withToken.status).toBe(401);
  });

  it("refuses pending and revoked nodes (403), and nodes of another org", async () => {
    const org = await createOrg("dl");
    const { bytes, digest } = await layer();
    await put(org.adminToken, digest, bytes);

    const pending = await enrolledNode(org.adminToken, "new-1", false);
    const pendingRes = await download(org.name, pending, digest);
    expect(pendingRes.status).toBe(403);
    expect(await errorCode(pendingRes)).toBe("forbidden");

    const revoked = await enrolledNode(org.adminToken, "old-1");
    expect((await download(org.name, revoked, digest)).status).toBe(200);
    const revoke = await call("POST", "/api/v1/nodes/old-1/revoke", { token: org.adminToken, body: {} });
    expect(revoke.status).toBe(200);
    expect((await download(org.name, revoked, digest)).status).toBe(403);

    const other = await createOrg("dl");
    const stranger = await enrolledNode(other.adminToken, "web-9");
    // Signing as its own org: authenticated, but the layer is not that org's.
    expect((await download(other.name, stranger, digest)).status).toBe(404);
    // Claiming the first org: the node is not enrolled there.
    expect((await download(org.name, stranger, digest)).status).toBe(401);
  });
});
