import { DurableObject } from "cloudflare:workers";
import type { CreatedOrg, CreatedToken, CreateTokenBody, Identity, OrgInfo, TokenRecord, UpdateOrgBody } from "../protocol/api.ts";
import { failure, type Result } from "../protocol/errors.ts";
import { formatToken, mintToken, type ParsedToken, type Scope, sha256Hex } from "../protocol/tokens.ts";
import { RateLimiter } from "./rate-limiter.ts";
import { applyMigrations } from "./sql-migrations.ts";

const DEFAULT_RATE_LIMIT_PER_MINUTE = 1200;
/** Recording every use would turn each read into a write; a minute's precision is enough. */
const LAST_USED_RESOLUTION_MS = 60_000;

const MIGRATIONS = [
  `CREATE TABLE org (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     rate_limit_per_minute INTEGER NOT NULL
   );
   CREATE TABLE api_tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     scope TEXT NOT NULL,
     secret_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     expires_at INTEGER,
     last_used_at INTEGER,
     revoked_at INTEGER
   );
   CREATE TABLE audit_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT NOT NULL,
     detail TEXT NOT NULL
   );`,
] as const;

interface OrgRow extends Record<string, SqlStorageValue> {
  name: string;
  created_at: number;
  rate_limit_per_minute: number;
}

interface TokenRow extends Record<string, SqlStorageValue> {
  id: string;
  name: string;
  scope: string;
  secret_hash: string;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function toOrgInfo(row: OrgRow): OrgInfo {
  return { name: row.name, createdAt: new Date(row.created_at).toISOString(), rateLimitPerMinute: row.rate_limit_per_minute };
}

function toTokenRecord(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope as Scope,
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
    expiresAt: iso(row.expires_at),
    lastUsedAt: iso(row.last_used_at),
    revokedAt: iso(row.revoked_at),
  };
}

interface HashedToken {
  parts: ParsedToken;
  secretHash: string;
}

async function mintHashedToken(org: string): Promise<HashedToken> {
  const parts = mintToken(org);
  return { parts, secretHash: await sha256Hex(parts.secret) };
}

async function hashesEqual(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const left = enc.encode(a);
  const right = enc.encode(b);
  return left.byteLength === right.byteLength && crypto.subtle.timingSafeEqual(left, right);
}

/** One per tenant: its API tokens, settings and audit log. */
export class OrgObject extends DurableObject<object> {
  private readonly sql: SqlStorage;
  private readonly limiter = new RateLimiter();

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, MIGRATIONS);
  }

  async createOrg(name: string, adminTokenName: string): Promise<Result<CreatedOrg>> {
    if (this.orgRow()) return failure("conflict", `org '${name}' already exists`);
    const minted = await mintHashedToken(name);
    if (this.orgRow()) return failure("conflict", `org '${name}' already exists`);
    const now = Date.now();
    this.sql.exec(
      "INSERT INTO org (id, name, created_at, rate_limit_per_minute) VALUES (1, ?, ?, ?)",
      name,
      now,
      DEFAULT_RATE_LIMIT_PER_MINUTE,
    );
    const admin = this.insertToken(minted, { name: adminTokenName, scope: "admin" }, "operator");
    this.audit("operator", "org.create", name, {});
    return { ok: true, org: toOrgInfo(this.orgRow() as OrgRow), admin };
  }

  getOrg(): OrgInfo | null {
    const row = this.orgRow();
    return row ? toOrgInfo(row) : null;
  }

  async authenticate(tokenId: string, secret: string): Promise<Result<{ identity: Identity }>> {
    const org = this.orgRow();
    const row = this.tokenRow(tokenId);
    const denied = failure("unauthorized", "invalid, expired or revoked API token");
    if (!org || !row || row.revoked_at !== null) return denied;
    const now = Date.now();
    if (row.expires_at !== null && row.expires_at <= now) return denied;
    if (!(await hashesEqual(await sha256Hex(secret), row.secret_hash))) return denied;
    const wait = this.limiter.take(tokenId, org.rate_limit_per_minute, now);
    if (wait > 0) {
      return failure("rate_limited", `rate limit of ${org.rate_limit_per_minute} requests per minute exceeded`, {
        retryAfterSeconds: wait,
      });
    }
    if (row.last_used_at === null || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
      this.sql.exec("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", now, tokenId);
    }
    return { ok: true, identity: { org: org.name, tokenId, tokenName: row.name, scope: row.scope as Scope } };
  }

  async createToken(body: CreateTokenBody, actor: string): Promise<Result<{ created: CreatedToken }>> {
    const org = this.orgRow();
    if (!org) return failure("not_found", "org not found");
    // Hash first: checks and writes below then run with no await between them.
    const minted = await mintHashedToken(org.name);
    const clash = this.sql
      .exec("SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL", body.name)
      .toArray();
    if (clash.length > 0) return failure("conflict", `an active token named '${body.name}' already exists`);
    const created = this.insertToken(minted, body, actor);
    this.audit(actor, "token.create", created.record.id, { name: body.name, scope: body.scope });
    return { ok: true, created };
  }

  listTokens(includeRevoked: boolean): TokenRecord[] {
    const where = includeRevoked ? "" : "WHERE revoked_at IS NULL";
    return this.sql
      .exec<TokenRow>(`SELECT * FROM api_tokens ${where} ORDER BY created_at, id`)
      .toArray()
      .map(toTokenRecord);
  }

  revokeToken(tokenId: string, actor: string): Result<{ record: TokenRecord }> {
    const row = this.tokenRow(tokenId);
    if (!row) return failure("not_found", `token '${tokenId}' not found`);
    if (row.revoked_at !== null) return failure("conflict", `token '${tokenId}' is already revoked`);
    this.sql.exec("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", Date.now(), tokenId);
    this.limiter.forget(tokenId);
    this.audit(actor, "token.revoke", tokenId, { name: row.name });
    return { ok: true, record: toTokenRecord(this.tokenRow(tokenId) as TokenRow) };
  }

  updateOrg(body: UpdateOrgBody, actor: string): Result<{ org: OrgInfo }> {
    if (!this.orgRow()) return failure("not_found", "org not found");
    this.sql.exec("UPDATE org SET rate_limit_per_minute = ?", body.rateLimitPerMinute);
    this.audit(actor, "org.update", "org", body);
    return { ok: true, org: toOrgInfo(this.orgRow() as OrgRow) };
  }

  /** Synchronous, so it commits together with whatever the caller wrote before it. */
  private insertToken(
    { parts, secretHash }: HashedToken,
    spec: { name: string; scope: Scope; ttlSeconds?: number | undefined },
    actor: string,
  ): CreatedToken {
    const now = Date.now();
    const expiresAt = spec.ttlSeconds === undefined ? null : now + spec.ttlSeconds * 1000;
    this.sql.exec(
      `INSERT INTO api_tokens (id, name, scope, secret_hash, created_at, created_by, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      parts.id,
      spec.name,
      spec.scope,
      secretHash,
      now,
      actor,
      expiresAt,
    );
    return { token: formatToken(parts), record: toTokenRecord(this.tokenRow(parts.id) as TokenRow) };
  }

  private orgRow(): OrgRow | undefined {
    return this.sql.exec<OrgRow>("SELECT * FROM org WHERE id = 1").toArray()[0];
  }

  private tokenRow(tokenId: string): TokenRow | undefined {
    return this.sql.exec<TokenRow>("SELECT * FROM api_tokens WHERE id = ?", tokenId).toArray()[0];
  }

  private audit(actor: string, action: string, target: string, detail: object): void {
    this.sql.exec(
      "INSERT INTO audit_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
      Date.now(),
      actor,
      action,
      target,
      JSON.stringify(detail),
    );
  }
}
