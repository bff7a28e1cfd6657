import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";

/**
 * The node's Ed25519 key. The private half is written once to the data dir and
 * never sent anywhere; the control plane only ever sees the public half and
 * signatures over its single-use nonces.
 */

/** Signs the connect challenge; injected so tests (and a future HSM) can supply their own. */
export type Signer = (data: Uint8Array) => Uint8Array;

export interface NodeKey {
  readonly privateKey: KeyObject;
  /** Raw 32-byte public key, base64url without padding (the wire format of `PublicKey`). */
  readonly publicKey: string;
}

export function generateNodeKey(): NodeKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** A JWK's `x` for an OKP key is exactly the raw public key in base64url without padding. */
export function publicKeyOf(privateKey: KeyObject): string {
  const jwk = createPublicKey(privateKey).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("not an Ed25519 key");
  return jwk.x;
}

export function privateKeyPem(privateKey: KeyObject): string {
  return privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

/** Parses a PKCS8 PEM and insists on Ed25519, so a stray RSA key is refused rather than misused. */
export function parsePrivateKey(pem: string): KeyObject {
  const key = createPrivateKey({ key: pem, format: "pem" });
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`expected an Ed25519 key, found ${key.asymmetricKeyType ?? "a symmetric key"}`);
  return key;
}

export function ed25519Signer(privateKey: KeyObject): Signer {
  // Ed25519 hashes internally, so the digest argument must be null.
  return (data) => new Uint8Array(sign(null, data, privateKey));
}
