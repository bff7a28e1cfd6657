import { fromBase64Url, toBase64Url } from "../../protocol/base64url.ts";

/**
 * AES-256-GCM under the SECRETS_KEY wrangler secret. The associated data binds a
 * ciphertext to its org, app and variable name, so a stored value cannot be
 * swapped onto another variable or app.
 */
export class SecretBox {
  private readonly key: Promise<CryptoKey>;

  private constructor(keyBytes: Uint8Array) {
    this.key = crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt", "decrypt"]);
  }

  /** Null when the key is missing or malformed: callers refuse to store secrets rather than store them in clear. */
  static fromHex(hex: string | undefined): SecretBox | null {
    if (!hex || !/^[0-9a-fA-F]{64}$/.test(hex)) return null;
    const bytes = new Uint8Array(32);
    for (let i = 0; i < 32; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    return new SecretBox(bytes);
  }

  async seal(plaintext: string, context: string): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const sealed = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: encoder.encode(context) },
      await this.key,
      encoder.encode(plaintext),
    );
    return `v1.${toBase64Url(iv)}.${toBase64Url(new Uint8Array(sealed))}`;
  }

  async open(sealed: string, context: string): Promise<string> {
    const [version, ivText, bodyText] = sealed.split(".");
    const iv = ivText ? fromBase64Url(ivText) : null;
    const body = bodyText ? fromBase64Url(bodyText) : null;
    if (version !== "v1" || !iv || !body) throw new Error("unrecognized secret format");
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(context) }, await this.key, body);
    return new TextDecoder().decode(plain);
  }
}

const encoder = new TextEncoder();
