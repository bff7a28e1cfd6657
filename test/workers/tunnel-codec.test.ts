import { describe, expect, it } from "vitest";
import {
  chunksOf,
  creditFrame,
  decodeFrame,
  encodeFrame,
  endToEndHeaders,
  FRAME,
  isFrameError,
  MAX_CHUNK_BYTES,
  OpenPayload,
  openFrame,
  parseCredit,
  parseJsonPayload,
  parseTunnelRequestUrl,
  parseWsClose,
  parseWsMessage,
  ReceiveWindow,
  ResetPayload,
  resetFrame,
  SendWindow,
  textOf,
  tunnelRequestUrl,
  wsCloseFrame,
  wsMessageFrame,
} from "../../protocol/tunnel.ts";

function decoded(bytes: Uint8Array) {
  const frame = decodeFrame(bytes);
  if (isFrameError(frame)) throw new Error(frame.error);
  return frame;
}

describe("tunnel frame codec", () => {
  it("lays a frame out as [u8 type][u32 stream id][payload], big-endian", () => {
    const frame = encodeFrame(FRAME.data, 0x01020304, new Uint8Array([9, 8, 7]));
    expect([...frame]).toEqual([FRAME.data, 1, 2, 3, 4, 9, 8, 7]);
    const back = decoded(frame);
    expect(back.type).toBe(FRAME.data);
    expect(back.streamId).toBe(0x01020304);
    expect([...back.payload]).toEqual([9, 8, 7]);
  });

  it("round-trips the largest stream id and an empty payload", () => {
    const back = decoded(encodeFrame(FRAME.end, 0xffffffff));
    expect(back.streamId).toBe(0xffffffff);
    expect(back.payload.byteLength).toBe(0);
  });

  it("decodes from a view into a larger buffer (as Node's ws hands it over)", () => {
    const inner = encodeFrame(FRAME.credit, 7, new Uint8Array([0, 0, 1, 0]));
    const big = new Uint8Array(inner.byteLength + 10);
    big.set(inner, 5);
    const back = decoded(big.subarray(5, 5 + inner.byteLength));
    expect(back.streamId).toBe(7);
    expect(parseCredit(back.payload)).toBe(256);
  });

  it("rejects short frames and unknown types with a reason", () => {
    expect(decodeFrame(new Uint8Array([1, 0, 0]))).toEqual({ error: "a tunnel frame needs at least 5 bytes" });
    expect(decodeFrame(new Uint8Array([99, 0, 0, 0, 1]))).toEqual({ error: "unknown tunnel frame type 99" });
    expect(decodeFrame(new Uint8Array([0, 0, 0, 0, 1]))).toEqual({ error: "unknown tunnel frame type 0" });
  });

  it("carries OPEN as JSON checked by its schema", () => {
    const open = { method: "POST", path: "/upload?x=1", headers: [["content-type", "text/plain"]] as Array<[string, string]>, taskId: "t1", port: 41000 };
    const back = decoded(openFrame(3, open));
    expect(back.type).toBe(FRAME.open);
    expect(parseJsonPayload(OpenPayload, back.payload)).toEqual(open);
    expect(parseJsonPayload(OpenPayload, new TextEncoder().encode('{"method":"GET"}'))).toBeNull();
    expect(parseJsonPayload(OpenPayload, new TextEncoder().encode("not json"))).toBeNull();
    expect(parseJsonPayload(OpenPayload, new TextEncoder().encode(JSON.stringify({ ...open, port: 70000 })))).toBeNull();
    expect(parseJsonPayload(OpenPayload, new TextEncoder().encode(JSON.stringify({ ...open, path: "http://evil/" })))).toBeNull();
  });

  it("carries RESET, CREDIT, WS_MESSAGE and WS_CLOSE", () => {
    expect(parseJsonPayload(ResetPayload, decoded(resetFrame(1, "refused", "no")).payload)).toEqual({ code: "refused", message: "no" });
    expect(parseCredit(decoded(creditFrame(1, 1 << 20)).payload)).toBe(1 << 20);
    expect(parseCredit(new Uint8Array(3))).toBeNull();
    const text = parseWsMessage(decoded(wsMessageFrame(2, "héllo")).payload);
    expect(text?.binary).toBe(false);
    expect(textOf(text?.data ?? new Uint8Array())).toBe("héllo");
    const binary = parseWsMessage(decoded(wsMessageFrame(2, new Uint8Array([0, 255]))).payload);
    expect(binary?.binary).toBe(true);
    expect([...(binary?.data ?? [])]).toEqual([0, 255]);
    expect(parseWsMessage(new Uint8Array([2, 1]))).toBeNull();
    expect(parseWsClose(decoded(wsCloseFrame(2, 4001, "bye")).payload)).toEqual({ code: 4001, reason: "bye" });
    expect(parseWsClose(new Uint8Array([1]))).toBeNull();
  });

  it("splits chunks at 64 KiB without copying", () => {
    const data = new Uint8Array(MAX_CHUNK_BYTES * 2 + 5);
    const pieces = [...chunksOf(data)];
    expect(pieces.map((p) => p.byteLength)).toEqual([MAX_CHUNK_BYTES, MAX_CHUNK_BYTES, 5]);
    expect(pieces[0]?.buffer).toBe(data.buffer);
  });

  it("round-trips the proxy's internal URL and refuses other paths", () => {
    const target = { app: "web", taskId: "t0000000000ab", port: 41234, timeoutMs: 5000, path: "/a/b?c=d&e=%20" };
    expect(parseTunnelRequestUrl(new URL(tunnelRequestUrl(target)))).toEqual(target);
    expect(parseTunnelRequestUrl(new URL("https://x/api/v1/agent/connect?org=a"))).toBeNull();
  });

  it("drops hop-by-hop fields and the ones Connection names, keeping the rest in order", () => {
    const headers = endToEndHeaders([
      ["Connection", "keep-alive, X-Secret"],
      ["Keep-Alive", "timeout=5"],
      ["X-Secret", "1"],
      ["Transfer-Encoding", "chunked"],
      ["Upgrade", "h2c"],
      ["Accept", "text/html"],
      ["Content-Length", "3"],
      ["accept", "*/*"],
    ]);
    expect(headers).toEqual([["accept", "text/html"], ["content-length", "3"], ["accept", "*/*"]]);
  });
});

describe("credit windows", () => {
  it("SendWindow hands out no more than granted and waits for credit", async () => {
    const window = new SendWindow(100);
    expect(await window.take(64)).toBe(64);
    expect(await window.take(64)).toBe(36);
    let got: number | null = null;
    const waiting = window.take(50).then((n) => (got = n));
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBeNull();
    window.grant(20);
    await waiting;
    expect(got).toBe(20);
  });

  it("SendWindow rejects waiters once failed", async () => {
    const window = new SendWindow(0);
    const waiting = window.take(1);
    window.fail(new Error("reset"));
    await expect(waiting).rejects.toThrow("reset");
  });

  it("ReceiveWindow grants in quarter-window steps and catches an overrun", () => {
    const window = new ReceiveWindow(1000);
    expect(window.received(1000)).toBe(true);
    expect(window.consumed(100)).toBe(0);
    expect(window.consumed(150)).toBe(250);
    expect(window.received(250)).toBe(true);
    expect(window.received(1)).toBe(false);
  });
});
