import { MAX_OUTPUT_BYTES, TRUNCATION_MARKER } from "../../../protocol/jobs.ts";

/**
 * Output that is cut at a byte limit, with the protocol's marker appended, so
 * one chatty command or one big file cannot blow up a return.
 */
export class CappedOutput {
  readonly limit: number;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  #truncated = false;

  constructor(limit: number = MAX_OUTPUT_BYTES) {
    this.limit = limit;
  }

  /** Keeps what fits; the rest is counted as truncated and dropped (the producer keeps being drained). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const room = this.limit - this.#bytes;
    if (room <= 0) {
      this.#truncated = true;
      return;
    }
    if (chunk.length > room) {
      this.#chunks.push(chunk.subarray(0, room));
      this.#bytes = this.limit;
      this.#truncated = true;
      return;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  /** UTF-8 text; when truncated, cut on a character boundary and followed by `TRUNCATION_MARKER`. */
  text(): string {
    const bytes = Buffer.concat(this.#chunks);
    if (!this.#truncated) return bytes.toString("utf8");
    return `${bytes.subarray(0, utf8Boundary(bytes)).toString("utf8")}${TRUNCATION_MARKER}`;
  }
}

/**
 * The length of `bytes` without an incomplete UTF-8 sequence at its end, so a
 * cut in the middle of a character does not leave a replacement character.
 */
export function utf8Boundary(bytes: Uint8Array): number {
  const end = bytes.length;
  // A sequence is at most 4 bytes: look back for the lead byte of the last one.
  for (let i = end - 1; i >= 0 && i >= end - 4; i--) {
    const byte = bytes[i] as number;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return end - i >= need ? end : i;
  }
  return end;
}
