import { type ClientRequest, type IncomingMessage, request } from "node:http";
import {
  creditFrame,
  encodeFrame,
  endToEndHeaders,
  FRAME,
  MAX_CHUNK_BYTES,
  type OpenPayload,
  parseCredit,
  ReceiveWindow,
  resetFrame,
  responseFrame,
  SendWindow,
  type TunnelFrame,
} from "../../../protocol/tunnel.ts";
import { messageOf } from "../state/files.ts";
import type { AgentStream, StreamContext } from "./tunnel.ts";

/**
 * One tunnelled HTTP request to a task on this host: request body frames are
 * written as they come and credited back once written out; the response body is
 * read only as fast as the node object grants credit.
 */
export class AgentHttpStream implements AgentStream {
  readonly #ctx: StreamContext;
  readonly #request: ClientRequest;
  readonly #sendWindow = new SendWindow();
  readonly #receiveWindow = new ReceiveWindow();
  #responded = false;
  #over = false;

  constructor(ctx: StreamContext, open: OpenPayload) {
    this.#ctx = ctx;
    this.#request = request({
      host: ctx.taskHost,
      port: open.port,
      method: open.method,
      path: open.path,
      // Raw pairs keep repeated fields and their order; Host is the client's, as the app expects.
      headers: open.headers.flat(),
      setHost: false,
    });
    this.#request.on("response", (response) => void this.#relayResponse(response));
    this.#request.on("error", (error) => {
      if (this.#responded) return this.#reset("aborted", `the app's connection failed: ${messageOf(error)}`);
      this.#reset("connect_failed", `could not reach the task on port ${open.port}: ${messageOf(error)}`);
    });
  }

  onFrame(frame: TunnelFrame): void {
    switch (frame.type) {
      case FRAME.data: {
        if (!this.#receiveWindow.received(frame.payload.byteLength)) return this.#reset("protocol", "the node object overran its credit");
        const bytes = frame.payload.byteLength;
        // Credited once written to the app's socket, so a slow app slows the sender instead of filling memory.
        this.#request.write(Buffer.from(frame.payload), () => {
          const grant = this.#receiveWindow.consumed(bytes);
          if (grant > 0 && !this.#over) this.#ctx.send(creditFrame(this.#ctx.id, grant));
        });
        return;
      }
      case FRAME.end:
        this.#request.end();
        return;
      case FRAME.credit: {
        const bytes = parseCredit(frame.payload);
        if (bytes !== null) this.#sendWindow.grant(bytes);
        return;
      }
      case FRAME.reset:
        // The client went away or the proxy timed out: the app's request is abandoned.
        this.#finish();
        this.#request.destroy();
        return;
      default:
        this.#reset("protocol", `unexpected frame type ${frame.type} on an HTTP stream`);
    }
  }

  destroy(): void {
    this.#finish();
    this.#request.destroy();
  }

  async #relayResponse(response: IncomingMessage): Promise<void> {
    this.#responded = true;
    const headers = endToEndHeaders(pairs(response.rawHeaders));
    this.#ctx.send(responseFrame(this.#ctx.id, { status: response.statusCode ?? 502, headers }));
    try {
      for await (const chunk of response as AsyncIterable<Buffer>) {
        for (let offset = 0; offset < chunk.byteLength; ) {
          const bytes = await this.#sendWindow.take(Math.min(MAX_CHUNK_BYTES, chunk.byteLength - offset));
          if (!this.#ctx.send(encodeFrame(FRAME.data, this.#ctx.id, chunk.subarray(offset, offset + bytes)))) throw new Error("the agent's socket closed");
          offset += bytes;
        }
      }
    } catch (error) {
      // The app died mid-response (or the stream was reset): the client must see an abort, not a short body.
      if (!this.#over) this.#reset("aborted", `the app's response broke off: ${messageOf(error)}`);
      return;
    }
    if (this.#over) return;
    this.#ctx.send(encodeFrame(FRAME.end, this.#ctx.id));
    this.#finish();
  }

  #reset(code: "aborted" | "connect_failed" | "protocol", message: string): void {
    if (this.#over) return;
    this.#ctx.send(resetFrame(this.#ctx.id, code, message));
    this.#ctx.logger.info("tunnel stream reset", { streamId: this.#ctx.id, code, message });
    this.#finish();
    this.#request.destroy();
  }

  #finish(): void {
    if (this.#over) return;
    this.#over = true;
    this.#sendWindow.fail(new Error("stream over"));
    this.#ctx.done();
  }
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const list: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) list.push([raw[i] as string, raw[i + 1] as string]);
  return list;
}
