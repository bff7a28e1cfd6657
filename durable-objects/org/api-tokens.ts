import type { CreatedToken, TokenRecord } from "../../protocol/api.ts";
import { type Scope, TOKEN_PREFIX } from "../../protocol/tokens.ts";
import { type HashedToken, iso, secretMatches, tokenText } from "./secrets.ts";

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

/** Recording every use would turn each read into a write; a minute's precision is enough. */
const LAST_USED_RESOLUTION_MS = 60_000;

function toRecord(row: TokenRow): TokenRecord {
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

export interface TokenSpec {
  name: string;
  scope: Scope;
  ttlSeconds?: number | undefined;
}

/** API tokens of one org; only a hash of each secret is kept. */
export class ApiTokenStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** Synchronous, so it commits together with whatever the caller wrote before it. */
  insert(hashed: HashedToken, spec: TokenSpec, actor: string): CreatedToken {
    const now = Date.now();
    const expiresAt = spec.ttlSeconds === undefined ? null : now + spec.ttlSeconds * 1000;
    this.sql.exec(
      `INSERT INTO api_tokens (id, name, scope, secret_hash, created_at, created_by, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      hashed.parts.id,
      spec.name,
      spec.scope,
      hashed.secretHash,
      now,
      actor,
      expiresAt,
    );
    return { token: tokenText(hashed, TOKEN_PREFIX), record: toRecord(this.row(hashed.parts.id) as TokenRow) };
  }

  activeNameTaken(name: string): boolean {
    return this.sql.exec("SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL", name).toArray().length > 0;
  }

  list(includeRevoked: boolean): TokenRecord[] {
    const where = includeRevoked ? "" : "WHERE revoked_at IS NULL";
    return this.sql.exec<TokenRow>(`SELECT * FROM api_tokens ${where} ORDER BY created_at, id`).toArray().map(toRecord);
  }

  get(id: string): TokenRecord | null {
    const row = this.row(id);
    return row ? toRecord(row) : null;
  }

  revoke(id: string): void {
    this.sql.exec("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", Date.now(), id);
  }

  /** The token's record if the secret matches a live token, else null. */
  async verify(id: string, secret: string, now: number): Promise<TokenRecord | null> {
    const row = this.row(id);
    if (!row || row.revoked_at !== null) return null;
    if (row.expires_at !== null && row.expires_at <= now) return null;
    if (!(await secretMatches(secret, row.secret_hash))) return null;
    if (row.last_used_at === null || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
      this.sql.exec("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", now, id);
    }
    return toRecord(row);
  }

  private row(id: string): TokenRow | undefined {
    return this.sql.exec<TokenRow>("SELECT * FROM api_tokens WHERE id = ?", id).toArray()[0];
  }
}
