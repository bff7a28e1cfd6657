import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CreateTokenBody, type TokenRecord } from "../../../protocol/api.ts";
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "../../../protocol/errors.ts";
import { formatToken, mintToken, parseToken, type Scope, scopeAllows } from "../../../protocol/tokens.ts";

/**
 * A stand-in for the API Worker that speaks the same routes, bodies and error
 * shapes, so the CLI can be driven as a real binary without workerd.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface CannedReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface FakeApi {
  readonly url: string;
  readonly org: string;
  readonly version: string;
  readonly adminToken: string;
  readonly readToken: string;
  readonly requests: RecordedRequest[];
  /** Records by id, including revoked ones. */
  readonly records: Map<string, TokenRecord>;
  /** The next request (of any route) gets this answer instead. */
  replyNext(reply: CannedReply): void;
  close(): Promise<void>;
}

interface StoredToken {
  plaintext: string;
  record: TokenRecord;
}

const CREATED_AT = "2026-01-05T10:20:30.000Z";

export async function startFakeApi(options: { org?: string; version?: string } = {}): Promise<FakeApi> {
  const org = options.org ?? "acme";
  const version = options.version ?? "9.8.7-fake";
  const tokens = new Map<string, StoredToken>();
  const records = new Map<string, TokenRecord>();
  const requests: RecordedRequest[] = [];
  const canned: CannedReply[] = [];

  const addToken = (name: string, scope: Scope, createdBy: string, ttlSeconds?: number): StoredToken => {
    const parts = mintToken(org);
    const record: TokenRecord = {
      id: parts.id,
      name,
      scope,
      createdAt: CREATED_AT,
      createdBy,
      expiresAt: ttlSeconds === undefined ? null : new Date(Date.parse(CREATED_AT) + ttlSeconds * 1000).toISOString(),
      lastUsedAt: null,
      revokedAt: null,
    };
    const stored = { plaintext: formatToken(parts), record };
    tokens.set(parts.id, stored);
    records.set(parts.id, record);
    return stored;
  };
  const admin = addToken("admin", "admin", "operator");
  const reader = addToken("dashboard", "read", `token:${admin.record.id}(admin)`);

  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://fake");
    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    requests.push({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, headers: req.headers, body });
    const requestId = req.headers["x-request-id"];
    if (typeof requestId === "string") res.setHeader("X-Request-ID", requestId);

    const reply = canned.shift();
    if (reply) return send(res, reply.status, reply.body, reply.headers);
    route(req.method ?? "GET", url, req.headers.authorization, body, res);
  });

  const route = (method: string, url: URL, authorization: string | undefined, body: unknown, res: ServerResponse): void => {
    const path = url.pathname;
    if (method === "GET" && path === "/healthz") return send(res, 200, { ok: true, component: "api", version });
    if (!path.startsWith("/api/v1/")) return fail(res, "not_found", `no route for ${method} ${path}`);

    const raw = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
    if (!raw) return fail(res, "unauthorized", "missing API token: send 'Authorization: Bearer <token>'");
    const parsed = parseToken(raw);
    const stored = parsed ? tokens.get(parsed.id) : undefined;
    if (!parsed || !stored || stored.plaintext !== raw || stored.record.revokedAt !== null) {
      return fail(res, "unauthorized", "invalid or revoked API token");
    }
    stored.record.lastUsedAt = "2026-01-06T08:00:00.000Z";
    const identity = { org, tokenId: stored.record.id, tokenName: stored.record.name, scope: stored.record.scope };

    if (method === "GET" && path === "/api/v1/whoami") return send(res, 200, { identity });
    if (method === "GET" && path === "/api/v1/org") return send(res, 200, { org: { name: org, createdAt: CREATED_AT, rateLimitPerMinute: 600 } });
    if (path === "/api/v1/tokens" || path.startsWith("/api/v1/tokens/")) {
      if (!scopeAllows(identity.scope, "admin")) {
        return fail(res, "forbidden", `this action needs the 'admin' scope; the token has '${identity.scope}'`);
      }
      const actor = `token:${identity.tokenId}(${identity.tokenName})`;
      if (method === "GET" && path === "/api/v1/tokens") {
        const all = url.searchParams.get("all") === "true";
        return send(res, 200, { tokens: [...records.values()].filter((r) => all || r.revokedAt === null) });
      }
      if (method === "POST" && path === "/api/v1/tokens") {
        const parsedBody = CreateTokenBody.safeParse(body);
        if (!parsedBody.success) return fail(res, "invalid_body", "request body does not match the schema");
        const created = addToken(parsedBody.data.name, parsedBody.data.scope, actor, parsedBody.data.ttlSeconds);
        return send(res, 201, { token: created.plaintext, record: created.record });
      }
      const id = decodeURIComponent(path.slice("/api/v1/tokens/".length));
      if (method === "DELETE" && id !== "") {
        const record = records.get(id);
        if (!record) return fail(res, "not_found", "token not found");
        record.revokedAt ??= "2026-01-07T09:30:00.000Z";
        return send(res, 200, { token: record });
      }
    }
    return fail(res, "not_found", `no route for ${method} ${path}`);
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    org,
    version,
    adminToken: admin.plaintext,
    readToken: reader.plaintext,
    requests,
    records,
    replyNext: (reply) => canned.push(reply),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

function fail(res: ServerResponse, code: ErrorCode, message: string): void {
  const body: ErrorBody = { error: { code, message } };
  send(res, ERROR_STATUS[code], body);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json", ...headers });
  res.end(text);
}

/** A URL on which nothing listens: the port of a server that was just closed. */
export async function unusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
