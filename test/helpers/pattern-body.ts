import { createHash } from "node:crypto";
import { Readable } from "node:stream";

/** `bytes` of a repeating pattern, produced as the stream is read (never whole in memory), hashed on the way out. */
export function patternBody(bytes: number): { stream: Readable; digest: () => string } {
  const hash = createHash("sha256");
  const block = Buffer.alloc(256 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7 + 3) % 256;
  let sent = 0;
  const stream = new Readable({
    read() {
      if (sent >= bytes) return void this.push(null);
      const piece = block.subarray(0, Math.min(block.length, bytes - sent));
      sent += piece.length;
      hash.update(piece);
      this.push(piece);
    },
  });
  return { stream, digest: () => hash.digest("hex") };
}
