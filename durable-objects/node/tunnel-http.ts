import {
  creditFrame,
  encodeFrame,
  FRAME,
  MAX_CHUNK_BYTES,
  type OpenPayload,
  openFrame,
  parseCredit,
  parseJsonPayload,
  ReceiveWindow,
  ResetPayload,
  ResponsePayload,
  SendWindow,
  TUNNEL_ERROR_HEADER,
  type TunnelFrame,
} from "../../protocol/tunnel.ts";
import { sendFrame, sendReset, type StreamBytes, type TunnelStream, tunnelError } from "./tunnel-common.ts";

/** Statuses that never carry a body. */
const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 204, 205, 304]);

/**
 * One proxied HTTP request: the request body goes out in DATA frames as the
 * agent grants credit; the response body is a stream fed by the agent's DATA
 * frames, granting credit back as the proxy reads it. A failure after the
 * response started errors the body, so the client sees an aborted response.
 */
export class HttpTunnelStream implements TunnelStream {
  readonly socket: WebSocket;
  readonly bytes: StreamBytes = { toAgent: 0, fromAgent: 0 };
  readonly #id: number;
  readonly #done: () => void;
  readonly #sendWindow = new SendWindow();
  readonly #receiveWindow = new ReceiveWindow();
  #head: ((response: Response) => void) | null = null;
  #headTimer: ReturnType<typeof setTimeout> | null = null;
  #method = "GET";
  #chunks: Uint8Array[] = [];
  #ended = false;
  #failure: Error | null = null;
  #wake: (() => void) | null = null;
  #finished = false;
  #requestReader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #timeoutMs = 30_000;

  constructor(id: number, socket: WebSocket, done: () => void) {
    this.#id = id;
    this.socket = socket;
    this.#done = done;
  }

  start(open: OpenPayload, body: ReadableStream<Uint8Array> | null, timeoutMs: number): Promise<Response> {
    this.#method = open.method;
    this.#timeoutMs = timeoutMs;
    const head = new Promise<Response>((resolve) => (this.#head = resolve));
    this.#armTimeout();
    if (!sendFrame(this.socket, openFrame(this.#id, open))) {
      this.#answer(tunnelError("offline", "the task's node has no agent connected"));
      this.#finish();
      return head;
    }
    void this.#pumpRequestBody(body);
    return head;
  }

  onFrame(frame: TunnelFrame): void {
    switch (frame.type) {
      case FRAME.response:
        return this.#onResponse(frame.payload);
      case FRAME.data:
        if (this.#head !== null || this.#ended) return this.#protocolError("DATA before the response or after its end");
        if (!this.#receiveWindow.received(frame.payload.byteLength)) return this.#protocolError("the agent overran its credit");
        this.#chunks.push(frame.payload.slice());
        this.bytes.fromAgent += frame.payload.byteLength;
        return this.#wakeReader();
      case FRAME.end:
        this.#ended = true;
        return this.#wakeReader();
      case FRAME.credit: {
        const bytes = parseCredit(frame.payload);
        if (bytes === null) return this.#protocolError("malformed CREDIT");
        // The app is reading the body: an upload in progress is not a slow app.
        if (this.#head !== null) this.#armTimeout();
        return this.#sendWindow.grant(bytes);
      }
      case FRAME.reset: {
        const reset = parseJsonPayload(ResetPayload, frame.payload);
        const code = reset?.code === "refused" || reset?.code === "connect_failed" ? reset.code : "gone";
        return this.#fail(code, reset?.message ?? "the agent reset the stream");
      }
      default:
        return this.#protocolError(`unexpected frame type ${frame.type} on an HTTP stream`);
    }
  }

  abort(reason: string): void {
    this.#fail("gone", reason);
  }

  #onResponse(payload: Uint8Array): void {
    const response = parseJsonPayload(ResponsePayload, payload);
    if (!response || this.#head === null) return this.#protocolError("malformed or repeated RESPONSE");
    const headers = new Headers();
    let length: number | null = null;
    for (const [name, value] of response.headers) {
      // An app cannot pose as the tunnel reporting an error.
      if (name === TUNNEL_ERROR_HEADER) continue;
      if (name === "content-length") length = /^\d{1,15}$/.test(value) ? Number(value) : null;
      else headers.append(name, value);
    }
    const bodyless = NULL_BODY_STATUSES.has(response.status) || this.#method === "HEAD";
    if (bodyless) {
      if (this.#method === "HEAD" && length !== null) headers.set("content-length", String(length));
      this.#answer(new Response(null, { status: response.status, headers }));
      // The agent still sends END; the stream finishes when it arrives.
      this.#chunks = [];
      void this.#drainBodyless();
      return;
    }
    this.#answer(new Response(this.#bodyStream(length), { status: response.status, headers }));
  }

  /** Reads the response body as the consumer asks for it; a known length is enforced, so a short body is an error. */
  #bodyStream(length: number | null): ReadableStream<Uint8Array> {
    const stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          let chunk: Uint8Array | null;
          try {
            chunk = await this.#nextChunk();
          } catch (error) {
            controller.error(error);
            return;
          }
          if (chunk === null) {
            controller.close();
            this.#finish();
            return;
          }
          controller.enqueue(chunk);
          const grant = this.#receiveWindow.consumed(chunk.byteLength);
          if (grant > 0) sendFrame(this.socket, creditFrame(this.#id, grant));
        },
        cancel: () => {
          sendReset(this.socket, this.#id, "aborted", "the client went away");
          this.#finish();
        },
      },
      { highWaterMark: 0 },
    );
    if (length === null) return stream;
    const fixed = new FixedLengthStream(length);
    stream.pipeTo(fixed.writable).catch(() => {
      // The fixed-length side errors too, which is the point: the client sees an aborted response.
    });
    return fixed.readable;
  }

  async #drainBodyless(): Promise<void> {
    try {
      while ((await this.#nextChunk()) !== null) {
        // A body on a bodyless answer is dropped.
      }
    } catch {
      // Reset or gone: nothing to deliver anyway.
    }
    this.#finish();
  }

  #nextChunk(): Promise<Uint8Array | null> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const chunk = this.#chunks.shift();
        if (chunk) return resolve(chunk);
        if (this.#failure) return reject(this.#failure);
        if (this.#ended) return resolve(null);
        this.#wake = attempt;
      };
      attempt();
    });
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #pumpRequestBody(body: ReadableStream<Uint8Array> | null): Promise<void> {
    try {
      if (body) {
        this.#requestReader = body.getReader();
        for (;;) {
          const { done, value } = await this.#requestReader.read();
          if (done) break;
          if (this.#head !== null) this.#armTimeout();
          await this.#sendChunk(value);
        }
      }
      if (this.#finished) return;
      sendFrame(this.socket, encodeFrame(FRAME.end, this.#id));
      // The app has the whole request: from here it gets the full timeout to start answering.
      if (this.#head !== null) this.#armTimeout();
    } catch (error) {
      if (this.#finished) return;
      sendReset(this.socket, this.#id, "aborted", "the client's request body failed");
      this.#fail("gone", `the request body failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  async #sendChunk(value: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < value.byteLength) {
      const bytes = await this.#sendWindow.take(Math.min(MAX_CHUNK_BYTES, value.byteLength - offset));
      if (!sendFrame(this.socket, encodeFrame(FRAME.data, this.#id, value.subarray(offset, offset + bytes)))) {
        throw new Error("the agent's socket closed");
      }
      offset += bytes;
      this.bytes.toAgent += bytes;
    }
  }

  /**
   * The timeout counts from the last progress of the request (a body chunk in, credit back
   * from the app, the end of the body) until the response starts, so a long upload is not
   * mistaken for a slow app.
   */
  #armTimeout(): void {
    if (this.#headTimer !== null) clearTimeout(this.#headTimer);
    const timeoutMs = this.#timeoutMs;
    this.#headTimer = setTimeout(() => {
      sendReset(this.socket, this.#id, "timeout", `no response within ${timeoutMs} ms`);
      this.#answer(tunnelError("timeout", `the app did not answer within ${Math.round(timeoutMs / 1000)} s`));
      this.#finish();
    }, timeoutMs);
  }

  #protocolError(message: string): void {
    sendReset(this.socket, this.#id, "protocol", message);
    this.#fail("protocol", message);
  }

  /** Before the response: a typed error answer. After: the body errors. */
  #fail(code: "refused" | "connect_failed" | "gone" | "protocol", message: string): void {
    if (this.#head !== null) this.#answer(tunnelError(code, message));
    this.#failure ??= new Error(message);
    this.#wakeReader();
    this.#finish();
  }

  #answer(response: Response): void {
    clearTimeout(this.#headTimer);
    const resolve = this.#head;
    this.#head = null;
    resolve?.(response);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#headTimer);
    this.#sendWindow.fail(new Error("stream finished"));
    this.#requestReader?.cancel().catch(() => {});
    this.#done();
  }
}
