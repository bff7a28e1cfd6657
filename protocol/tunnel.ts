import { z } from "zod";

/**
 * Tunnel frames: proxied HTTP and WebSocket traffic between a NodeObject and its
 * agent, as binary WebSocket messages on the agent's one socket (JSON text frames
 * carry everything else). Each frame is `[u8 type][u32 stream id][payload]`.
 *
 * Streams are opened only by the node object. Bodies move in DATA chunks of at
 * most 64 KiB under per-stream credit: a sender may have at most the credit the
 * receiver granted in flight (an initial window, then CREDIT frames as the
 * receiver's consumer reads), so a 100 MB body never sits in memory on either side.
 */

export const FRAME = {
  /** node → agent, JSON {@link OpenPayload}. */
  open: 1,
  /** Body bytes, either way. */
  data: 2,
  /** The sender's body is complete, either way. */
  end: 3,
  /** agent → node, JSON {@link ResponsePayload}: status and headers (101 for an accepted WebSocket). */
  response: 4,
  /** Either way, JSON {@link ResetPayload}: the stream is abandoned. */
  reset: 5,
  /** Either way, u32: the receiver may be sent this many more body bytes. */
  credit: 6,
  /** Either way, once upgraded: u8 (1 binary, 0 text) + message bytes. */
  wsMessage: 7,
  /** Either way, once upgraded: u16 code + UTF-8 reason. */
  wsClose: 8,
} as const;

export type FrameType = (typeof FRAME)[keyof typeof FRAME];

const FRAME_TYPES: ReadonlySet<number> = new Set(Object.values(FRAME));
export const FRAME_HEADER_BYTES = 5;
export const MAX_CHUNK_BYTES = 64 * 1024;
/** Body bytes a sender may have in flight per stream before the first CREDIT. */
export const INITIAL_WINDOW_BYTES = 1024 * 1024;
/** WebSocket messages are not chunked; they are capped so one frame stays under the wire's 1 MiB limit. */
export const MAX_WS_MESSAGE_BYTES = 1024 * 1024 - 1024;
/** Requests with more header fields than this never reach an app. */
export const MAX_HEADERS = 100;
export const MAX_STREAM_ID = 0xffffffff;

export type HeaderPairs = Array<[string, string]>;

const HeaderPairsSchema = z.array(z.tuple([z.string().max(256), z.string().max(16 * 1024)])).max(MAX_HEADERS * 2);

export const OpenPayload = z
  .object({
    method: z.string().regex(/^[A-Z]{1,16}$/),
    /** Path and query, as the client sent them. */
    path: z.string().startsWith("/").max(16 * 1024),
    headers: HeaderPairsSchema,
    taskId: z.string().min(1).max(64),
    port: z.number().int().min(1).max(65535),
    upgrade: z.literal("websocket").optional(),
  })
  .strict();
export type OpenPayload = z.infer<typeof OpenPayload>;

export const ResponsePayload = z.object({ status: z.number().int().min(101).max(599), headers: HeaderPairsSchema }).strict();
export type ResponsePayload = z.infer<typeof ResponsePayload>;

export const RESET_CODES = ["refused", "connect_failed", "aborted", "timeout", "protocol", "gone"] as const;
export const ResetPayload = z.object({ code: z.enum(RESET_CODES), message: z.string().max(1024) }).strict();
export type ResetPayload = z.infer<typeof ResetPayload>;
export type ResetCode = (typeof RESET_CODES)[number];

export interface TunnelFrame {
  type: FrameType;
  streamId: number;
  payload: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeFrame(type: FrameType, streamId: number, payload: Uint8Array = EMPTY): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint8(0, type);
  view.setUint32(1, streamId);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** The frame in `data`, or a one-line reason it is not one. The payload is a view, not a copy. */
export function decodeFrame(data: ArrayBuffer | Uint8Array): TunnelFrame | { error: string } {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.byteLength < FRAME_HEADER_BYTES) return { error: `a tunnel frame needs at least ${FRAME_HEADER_BYTES} bytes` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = view.getUint8(0);
  if (!FRAME_TYPES.has(type)) return { error: `unknown tunnel frame type ${type}` };
  return { type: type as FrameType, streamId: view.getUint32(1), payload: bytes.subarray(FRAME_HEADER_BYTES) };
}

export function isFrameError(value: TunnelFrame | { error: string }): value is { error: string } {
  return "error" in value;
}

export function jsonFrame(type: typeof FRAME.open | typeof FRAME.response | typeof FRAME.reset, streamId: number, body: object): Uint8Array {
  return encodeFrame(type, streamId, encoder.encode(JSON.stringify(body)));
}

export function openFrame(streamId: number, open: OpenPayload): Uint8Array {
  return jsonFrame(FRAME.open, streamId, open);
}

export function responseFrame(streamId: number, response: ResponsePayload): Uint8Array {
  return jsonFrame(FRAME.response, streamId, response);
}

export function resetFrame(streamId: number, code: ResetCode, message: string): Uint8Array {
  return jsonFrame(FRAME.reset, streamId, { code, message: message.slice(0, 1024) } satisfies ResetPayload);
}

export function creditFrame(streamId: number, bytes: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, Math.min(bytes, MAX_STREAM_ID));
  return encodeFrame(FRAME.credit, streamId, payload);
}

export function wsMessageFrame(streamId: number, data: Uint8Array | string): Uint8Array {
  const binary = typeof data !== "string";
  const body = binary ? data : encoder.encode(data);
  const payload = new Uint8Array(1 + body.byteLength);
  payload[0] = binary ? 1 : 0;
  payload.set(body, 1);
  return encodeFrame(FRAME.wsMessage, streamId, payload);
}

export function wsCloseFrame(streamId: number, code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason).subarray(0, 123);
  const payload = new Uint8Array(2 + text.byteLength);
  new DataView(payload.buffer).setUint16(0, code);
  payload.set(text, 2);
  return encodeFrame(FRAME.wsClose, streamId, payload);
}

/** Parses a JSON payload with its schema; null when it is not JSON or does not fit. */
export function parseJsonPayload<T>(schema: z.ZodType<T>, payload: Uint8Array): T | null {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    return null;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

export function parseCredit(payload: Uint8Array): number | null {
  if (payload.byteLength !== 4) return null;
  return new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
}

export function parseWsMessage(payload: Uint8Array): { binary: boolean; data: Uint8Array } | null {
  if (payload.byteLength < 1 || (payload[0] !== 0 && payload[0] !== 1)) return null;
  return { binary: payload[0] === 1, data: payload.subarray(1) };
}

export function parseWsClose(payload: Uint8Array): { code: number; reason: string } | null {
  if (payload.byteLength < 2) return null;
  return { code: new DataView(payload.buffer, payload.byteOffset, 2).getUint16(0), reason: decoder.decode(payload.subarray(2)) };
}

export function textOf(data: Uint8Array): string {
  return decoder.decode(data);
}

/**
 * The sending side of one stream's credit: `take` waits until the receiver has
 * granted room, and never hands out more than it granted.
 */
export class SendWindow {
  #credit: number;
  #waiters: Array<() => void> = [];
  #failure: Error | null = null;

  constructor(initial: number = INITIAL_WINDOW_BYTES) {
    this.#credit = initial;
  }

  get credit(): number {
    return this.#credit;
  }

  grant(bytes: number): void {
    this.#credit += bytes;
    this.#wakeAll();
  }

  /** Resolves with how many bytes (1..max) may be sent now; rejects once the stream failed. */
  async take(max: number): Promise<number> {
    while (this.#credit <= 0) {
      if (this.#failure) throw this.#failure;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#failure) throw this.#failure;
    const bytes = Math.min(max, this.#credit);
    this.#credit -= bytes;
    return bytes;
  }

  fail(error: Error): void {
    this.#failure ??= error;
    this.#wakeAll();
  }

  #wakeAll(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * The receiving side: counts bytes the consumer has taken and says when to grant
 * more credit, in steps of a quarter window so CREDIT frames stay few.
 */
export class ReceiveWindow {
  readonly #window: number;
  #received = 0;
  #granted: number;
  #consumed = 0;

  constructor(window: number = INITIAL_WINDOW_BYTES) {
    this.#window = window;
    this.#granted = window;
  }

  /** False when the sender overran its credit: a protocol error. */
  received(bytes: number): boolean {
    this.#received += bytes;
    return this.#received <= this.#granted;
  }

  /** The consumer took `bytes`; returns the credit to grant now (0: not yet). */
  consumed(bytes: number): number {
    this.#consumed += bytes;
    const grant = this.#consumed + this.#window - this.#granted;
    if (grant < this.#window / 4) return 0;
    this.#granted += grant;
    return grant;
  }
}

/** Splits a chunk into pieces of at most MAX_CHUNK_BYTES (views, no copies). */
export function* chunksOf(data: Uint8Array, size: number = MAX_CHUNK_BYTES): Generator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += size) yield data.subarray(offset, offset + size);
}

// ---- between the proxy Worker and a NodeObject ----

/** The internal request path the proxy uses on a node object; the API Worker only ever forwards `/api/v1/agent/connect`. */
export const TUNNEL_PATH_PREFIX = "/__zectre/tunnel/";
/** Set on every answer the tunnel itself produced (never on the app's own responses): what went wrong. */
export const TUNNEL_ERROR_HEADER = "x-zectre-tunnel-error";

export const TUNNEL_ERRORS = {
  /** The node has no agent connected. */
  offline: 502,
  /** The node object never sent this task (of this app) to its agent. */
  unknown_task: 502,
  /** The agent refused: the port is not one of its tasks'. */
  refused: 502,
  /** The agent could not connect to the task's port. */
  connect_failed: 502,
  /** The agent went away before the response started. */
  gone: 502,
  /** No response headers within the proxy's timeout. */
  timeout: 504,
  /** Either side broke the frame protocol. */
  protocol: 502,
} as const;
export type TunnelErrorCode = keyof typeof TUNNEL_ERRORS;

/** Errors after which nothing reached the app (or it never answered at all): a safe request may try another task. */
export const RETRYABLE_TUNNEL_ERRORS: ReadonlySet<string> = new Set<TunnelErrorCode>(["offline", "unknown_task", "refused", "connect_failed", "gone"]);

export interface TunnelRequestTarget {
  app: string;
  taskId: string;
  port: number;
  timeoutMs: number;
  /** The client's path and query, passed on to the app as they are. */
  path: string;
}

export function tunnelRequestUrl(target: TunnelRequestTarget): string {
  const query = new URLSearchParams({ app: target.app, port: String(target.port), timeout: String(target.timeoutMs), path: target.path });
  return `https://node.internal${TUNNEL_PATH_PREFIX}${encodeURIComponent(target.taskId)}?${query}`;
}

export function parseTunnelRequestUrl(url: URL): TunnelRequestTarget | null {
  if (!url.pathname.startsWith(TUNNEL_PATH_PREFIX)) return null;
  const taskId = decodeURIComponent(url.pathname.slice(TUNNEL_PATH_PREFIX.length));
  const app = url.searchParams.get("app") ?? "";
  const port = Number(url.searchParams.get("port"));
  const timeoutMs = Number(url.searchParams.get("timeout"));
  const path = url.searchParams.get("path") ?? "";
  if (taskId === "" || app === "" || !path.startsWith("/") || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { app, taskId, port, path, timeoutMs: Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 30_000 };
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) and the ones the tunnel sets itself: never
 * passed on in either direction. Fields a Connection header names are dropped too.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
  "proxy-authenticate", "proxy-authorization",
]);

/** Header pairs without hop-by-hop fields. Content-Length stays: each hop frames the body to that length. */
export function endToEndHeaders(pairs: Iterable<[string, string]>): HeaderPairs {
  const list = [...pairs].map(([name, value]): [string, string] => [name.toLowerCase(), value]);
  const named = new Set(list.filter(([name]) => name === "connection").flatMap(([, value]) => value.split(",").map((v) => v.trim().toLowerCase())));
  return list.filter(([name]) => !HOP_BY_HOP.has(name) && !named.has(name));
}

// ---- what the proxy asks an app object ----

export interface RouteTask {
  taskId: string;
  nodeId: string;
  hostPort: number;
}

/** A deployment that scales down when idle: the proxy reports that it serves requests, and may wake it. */
export interface RouteIdle {
  /** Tell the app object about requests at most this often (per proxy isolate). */
  touchEveryMs: number;
  /** Its minimum is 0: with no healthy task, wake it and hold the request. */
  scalesToZero: boolean;
}

/** The healthy tasks serving a deployment; `deploymentId` null when the app has nothing promoted yet. */
export interface RouteTasks {
  deploymentId: string | null;
  tasks: RouteTask[];
  idle?: RouteIdle;
}
