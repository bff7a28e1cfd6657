/**
 * Splits a byte stream into lines for log shipping. A line longer than the cap
 * keeps its first `maxBytes` (cut on a character boundary) and the rest, up to
 * the next newline, is dropped: one runaway line must not become a flood.
 */

export const MAX_LINE_BYTES = 16 * 1024;

export class LineSplitter {
  readonly #emit: (line: string) => void;
  readonly #maxBytes: number;
  #parts: Buffer[] = [];
  #bytes = 0;
  /** The current line already hit the cap; its rest is discarded until the newline. */
  #overflowed = false;

  constructor(emit: (line: string) => void, maxBytes: number = MAX_LINE_BYTES) {
    this.#emit = emit;
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
      this.#take(chunk.subarray(start, newline));
      this.#finishLine();
      start = newline + 1;
    }
    if (start < chunk.length) this.#take(chunk.subarray(start));
  }

  /** Emits an unterminated last line (the stream ended). */
  end(): void {
    if (this.#bytes > 0 || this.#overflowed) this.#finishLine();
  }

  #take(part: Buffer): void {
    if (this.#overflowed) return;
    const room = this.#maxBytes - this.#bytes;
    if (part.length > room) {
      this.#parts.push(part.subarray(0, utf8Boundary(part, room)));
      this.#bytes = this.#maxBytes;
      this.#overflowed = true;
      return;
    }
    this.#parts.push(part);
    this.#bytes += part.length;
  }

  #finishLine(): void {
    let line = Buffer.concat(this.#parts).toString("utf8");
    if (line.endsWith("\r")) line = line.slice(0, -1);
    this.#parts = [];
    this.#bytes = 0;
    this.#overflowed = false;
    this.#emit(line);
  }
}

/** The largest cut ≤ `limit` that does not split a UTF-8 sequence (continuation bytes are 10xxxxxx). */
function utf8Boundary(bytes: Buffer, limit: number): number {
  let cut = Math.max(0, limit);
  while (cut > 0 && cut < bytes.length && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  return cut;
}
