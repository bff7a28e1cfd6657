import { fromBase64Url, toBase64Url } from "../../protocol/base64url.ts";
import { connectSigningInput } from "../../protocol/nodes.ts";

const NONCE_TTL_MS = 60_000;
/** Bounds the table if something requests challenges without ever connecting. */
const MAX_OUTSTANDING_NONCES = 32;

/** Single-use connect nonces: a replayed handshake finds its nonce already spent. */
export class NonceStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  issue(now: number): { nonce: string; expiresAt: number } {
    this.sql.exec("DELETE FROM nonces WHERE expires_at <= ?", now);
    this.sql.exec(
      `DELETE FROM nonces WHERE nonce NOT IN (SELECT nonce FROM nonces ORDER BY expires_at DESC LIMIT ?)`,
      MAX_OUTSTANDING_NONCES - 1,
    );
    const bytes = new Uint8Array(24);
    crypto.getRandomValues(bytes);
    const nonce = toBase64Url(bytes);
    const expiresAt = now + NONCE_TTL_MS;
    this.sql.exec("INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)", nonce, expiresAt);
    return { nonce, expiresAt };
  }

  /** Spends the nonce whatever happens next; true if it was live. */
  spend(nonce: string, now: number): boolean {
    const row = this.sql.exec<{ expires_at: number }>("SELECT expires_at FROM nonces WHERE nonce = ?", nonce).toArray()[0];
    this.sql.exec("DELETE FROM nonces WHERE nonce = ?", nonce);
    return row !== undefined && row.expires_at > now;
  }
}

export async function signatureValid(
  publicKey: string,
  signature: string,
  org: string,
  nodeId: string,
  nonce: string,
): Promise<boolean> {
  const keyBytes = fromBase64Url(publicKey);
  const sigBytes = fromBase64Url(signature);
  if (!keyBytes || keyBytes.byteLength !== 32 || !sigBytes || sigBytes.byteLength !== 64) return false;
  try {
    const key = await crypto.subtle.importKey("raw", keyBytes, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sigBytes, connectSigningInput(org, nodeId, nonce));
  } catch {
    return false;
  }
}
