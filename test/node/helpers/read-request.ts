import type { IncomingMessage } from "node:http";

/**
 * A fake server's view of a request: its URL, its raw bytes, and its body as JSON when it parses,
 * else as text (undefined when empty).
 */
export async function readRequest(req: IncomingMessage): Promise<{ url: URL; bytes: Buffer; body: unknown }> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  const text = bytes.toString("utf8");
  const url = new URL(req.url ?? "/", "http://fake");
  try {
    return { url, bytes, body: text === "" ? undefined : JSON.parse(text) };
  } catch {
    return { url, bytes, body: text };
  }
}
