/**
 * A reader for Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
 * over a fetch body. EventSource is not an option: it cannot send an Authorization
 * header, and it reconnects on its own terms rather than with the `since` the API wants.
 */

export interface SseMessage {
  /** The `event:` field, `message` when absent. */
  readonly event: string;
  /** Every `data:` line of the message, joined with newlines. */
  readonly data: string;
  /** The last `id:` seen on the stream so far, as the spec keeps it; empty when none. */
  readonly id: string;
}

/**
 * Yields one message per blank-line-terminated block. Lines may be split anywhere
 * across chunks (even between `\r` and `\n`); `:` lines are comments; a block the
 * stream ends in the middle of is dropped, as the spec says. Returns when the stream
 * ends; a network failure surfaces as the stream's error.
 */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage, void, undefined> {
  const decoder = new TextDecoder("utf-8");
  const reader = body.getReader();
  let buffer = "";
  // A chunk that ended in `\r` may be followed by the `\n` of the same line ending.
  let skipLeadingNewline = false;
  let first = true;
  let event = "";
  let data: string[] = [];
  let hasData = false;
  let lastId = "";

  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (first && buffer.length > 0) {
        // The spec strips one leading byte order mark.
        if (buffer.startsWith("\uFEFF")) buffer = buffer.slice(1);
        first = false;
      }
      if (skipLeadingNewline && buffer.length > 0) {
        if (buffer.startsWith("\n")) buffer = buffer.slice(1);
        skipLeadingNewline = false;
      }

      let start = 0;
      for (;;) {
        const end = nextLineEnd(buffer, start);
        if (end < 0) break;
        const line = buffer.slice(start, end);
        if (buffer[end] === "\r") {
          if (end + 1 < buffer.length) start = buffer[end + 1] === "\n" ? end + 2 : end + 1;
          else {
            start = end + 1;
            skipLeadingNewline = true;
          }
        } else {
          start = end + 1;
        }

        if (line === "") {
          if (hasData) yield { event: event === "" ? "message" : event, data: data.join("\n"), id: lastId };
          event = "";
          data = [];
          hasData = false;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") {
          data.push(value);
          hasData = true;
        } else if (field === "event") {
          event = value;
        } else if (field === "id") {
          if (!value.includes("\u0000")) lastId = value;
        }
        // `retry` and unknown fields are ignored: the caller decides when to reconnect.
      }
      buffer = buffer.slice(start);
      if (done) return;
    }
  } finally {
    // Stops the body (and the connection) when the consumer breaks out early.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function nextLineEnd(text: string, from: number): number {
  for (let index = from; index < text.length; index++) {
    const char = text[index];
    if (char === "\n" || char === "\r") return index;
  }
  return -1;
}
