import { formatToken, mintToken, type ParsedToken, sha256Hex } from "../../protocol/tokens.ts";

export interface HashedToken {
  parts: ParsedToken;
  secretHash: string;
}

/** Mints a token and hashes its secret up front, so callers can write rows with no await in between. */
export async function mintHashedToken(org: string): Promise<HashedToken> {
  const parts = mintToken(org);
  return { parts, secretHash: await sha256Hex(parts.secret) };
}

export function tokenText(hashed: HashedToken, prefix: string): string {
  return formatToken(hashed.parts, prefix);
}

export async function secretMatches(secret: string, storedHash: string): Promise<boolean> {
  const enc = new TextEncoder();
  const left = enc.encode(await sha256Hex(secret));
  const right = enc.encode(storedHash);
  return left.byteLength === right.byteLength && crypto.subtle.timingSafeEqual(left, right);
}

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
