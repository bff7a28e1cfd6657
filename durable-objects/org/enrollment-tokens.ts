import type { CreateEnrollmentTokenBody, EnrollmentTokenRecord, Labels } from "../../protocol/nodes.ts";
import { ENROLLMENT_TOKEN_PREFIX } from "../../protocol/tokens.ts";
import { type HashedToken, iso, secretMatches, tokenText } from "./secrets.ts";

interface EnrollmentTokenRow extends Record<string, SqlStorageValue> {
  id: string;
  secret_hash: string;
  uses: number;
  used: number;
  auto_approve: number;
  labels: string;
  created_at: number;
  created_by: string;
  expires_at: number;
  revoked_at: number | null;
}

function toRecord(row: EnrollmentTokenRow): EnrollmentTokenRecord {
  return {
    id: row.id,
    uses: row.uses,
    usesLeft: Math.max(0, row.uses - row.used),
    autoApprove: row.auto_approve === 1,
    labels: JSON.parse(row.labels) as Labels,
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
    expiresAt: new Date(row.expires_at).toISOString(),
    revokedAt: iso(row.revoked_at),
  };
}

export type EnrollmentTokenCheck =
  | { ok: true; record: EnrollmentTokenRecord }
  | { ok: false; message: string };

/** Enrollment tokens: limited uses, an expiry, and the labels and approval mode they grant. */
export class EnrollmentTokenStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  insert(hashed: HashedToken, spec: CreateEnrollmentTokenBody, actor: string): { token: string; record: EnrollmentTokenRecord } {
    const now = Date.now();
    this.sql.exec(
      `INSERT INTO enrollment_tokens (id, secret_hash, uses, used, auto_approve, labels, created_at, created_by, expires_at)
       VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)`,
      hashed.parts.id,
      hashed.secretHash,
      spec.uses,
      spec.autoApprove ? 1 : 0,
      JSON.stringify(spec.labels),
      now,
      actor,
      now + spec.ttlSeconds * 1000,
    );
    return { token: tokenText(hashed, ENROLLMENT_TOKEN_PREFIX), record: toRecord(this.row(hashed.parts.id) as EnrollmentTokenRow) };
  }

  list(includeSpent: boolean): EnrollmentTokenRecord[] {
    const where = includeSpent ? "" : "WHERE revoked_at IS NULL AND used < uses AND expires_at > ?";
    const rows = includeSpent
      ? this.sql.exec<EnrollmentTokenRow>(`SELECT * FROM enrollment_tokens ORDER BY created_at, id`)
      : this.sql.exec<EnrollmentTokenRow>(`SELECT * FROM enrollment_tokens ${where} ORDER BY created_at, id`, Date.now());
    return rows.toArray().map(toRecord);
  }

  get(id: string): EnrollmentTokenRecord | null {
    const row = this.row(id);
    return row ? toRecord(row) : null;
  }

  revoke(id: string): void {
    this.sql.exec("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ?", Date.now(), id);
  }

  /** Checks a presented token without spending a use; the message says exactly why it fails. */
  async check(id: string, secret: string, now: number): Promise<EnrollmentTokenCheck> {
    const row = this.row(id);
    if (!row || !(await secretMatches(secret, row.secret_hash))) return { ok: false, message: "invalid enrollment token" };
    if (row.revoked_at !== null) return { ok: false, message: "enrollment token was revoked" };
    if (row.expires_at <= now) return { ok: false, message: "enrollment token expired" };
    if (row.used >= row.uses) return { ok: false, message: "enrollment token has no uses left" };
    return { ok: true, record: toRecord(row) };
  }

  spendUse(id: string): void {
    this.sql.exec("UPDATE enrollment_tokens SET used = used + 1 WHERE id = ?", id);
  }

  private row(id: string): EnrollmentTokenRow | undefined {
    return this.sql.exec<EnrollmentTokenRow>("SELECT * FROM enrollment_tokens WHERE id = ?", id).toArray()[0];
  }
}
