import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Logger } from "../../agent/src/log.ts";
import { droppedMarker, LogOutbox } from "../../agent/src/state/log-outbox.ts";
import { LineSplitter, MAX_LINE_BYTES } from "../../agent/src/tasks/lines.ts";
import { LogShipper } from "../../agent/src/tasks/log-shipper.ts";
import { type LogLine, MAX_LOG_BATCH, newDeploymentId, newTaskId, TaskLogsMessage } from "../../protocol/deployments.ts";
import { until } from "./helpers/agent-control-plane.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** Task output: lines cut from streams, batched into task.logs, kept in a bounded on-disk backlog. */

const tempDir = useTempDirs();
const shippers: LogShipper[] = [];
afterEach(() => {
  for (const shipper of shippers.splice(0)) shipper.stop();
});

const TASK_A = newTaskId();
const TASK_B = newTaskId();
const DEPLOYMENT = newDeploymentId();

function line(n: number, taskId = TASK_A, text = `line ${n}`): LogLine {
  return { taskId, app: "hello", deploymentId: DEPLOYMENT, stream: "stdout", ts: new Date(0).toISOString(), line: text };
}

function splitAll(chunks: (string | Buffer)[], maxBytes?: number): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((l) => lines.push(l), maxBytes);
  for (const chunk of chunks) splitter.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  splitter.end();
  return lines;
}

interface ShipperHarness {
  shipper: LogShipper;
  outbox: LogOutbox;
  sent: TaskLogsMessage[];
  logs: Record<string, unknown>[];
  online: boolean;
}

function makeShipper(options: { maxBatches?: number; maxBytes?: number; maxLines?: number; flushMs?: number } = {}): ShipperHarness {
  const outbox = LogOutbox.open(join(tempDir(), "log-outbox"), options);
  const logs: Record<string, unknown>[] = [];
  const harness: ShipperHarness = {
    outbox,
    sent: [],
    logs,
    online: true,
    shipper: new LogShipper({
      outbox,
      send: (message) => {
        if (!harness.online) return false;
        harness.sent.push(TaskLogsMessage.parse(message));
        return true;
      },
      logger: new Logger({ sink: (text) => logs.push(JSON.parse(text) as Record<string, unknown>) }),
      ...(options.maxLines !== undefined ? { maxLines: options.maxLines } : {}),
      flushMs: options.flushMs ?? 10_000,
    }),
  };
  shippers.push(harness.shipper);
  return harness;
}

describe("LineSplitter", () => {
  it("splits on newlines across chunks, drops \\r, and emits an unterminated last line at the end", () => {
    expect(splitAll(["one\ntw", "o\r\nthr", "ee"])).toEqual(["one", "two", "three"]);
    expect(splitAll(["\n\n"])).toEqual(["", ""]);
    expect(splitAll([])).toEqual([]);
  });

  it("cuts a long line at 16 KiB on a character boundary and skips the rest of it", () => {
    const long = "x".repeat(MAX_LINE_BYTES - 1) + "é" + "y".repeat(5000);
    const lines = splitAll([long.slice(0, 9000), long.slice(9000), "\nnext\n"]);
    expect(lines).toHaveLength(2);
    // The two-byte é would straddle the cut, so it goes whole.
    expect(lines[0]).toBe("x".repeat(MAX_LINE_BYTES - 1));
    expect(lines[1]).toBe("next");
    // Split multi-byte characters across chunks survive.
    const euro = Buffer.from("€\n");
    expect(splitAll([euro.subarray(0, 1), euro.subarray(1)])).toEqual(["€"]);
  });
});

describe("LogOutbox", () => {
  it("keeps batches across a reopen until they are acked", () => {
    const dir = join(tempDir(), "log-outbox");
    const outbox = LogOutbox.open(dir);
    const message: TaskLogsMessage = { type: "task.logs", v: 1, id: "logs.1", lines: [line(1)] };
    expect(outbox.enqueue(message)).toEqual([]);
    // A crash mid-write leaves a temp file, which the next open removes.
    writeFileSync(join(dir, ".000000000009.json.1.tmp"), "{");
    const reopened = LogOutbox.open(dir);
    expect(reopened.pending()).toEqual([message]);
    expect(readdirSync(dir)).toEqual(["000000000001.json"]);
    expect(reopened.ack(["logs.1", "some-return-id"])).toBe(1);
    expect(LogOutbox.open(dir).size).toBe(0);
  });

  it("past its caps drops the OLDEST batches and says whose lines went", () => {
    const outbox = LogOutbox.open(join(tempDir(), "log-outbox"), { maxBatches: 2 });
    outbox.enqueue({ type: "task.logs", v: 1, id: "b1", lines: [line(1, TASK_A), line(2, TASK_B)] });
    outbox.enqueue({ type: "task.logs", v: 1, id: "b2", lines: [line(3)] });
    const dropped = outbox.enqueue({ type: "task.logs", v: 1, id: "b3", lines: [line(4)] });
    expect(dropped).toEqual([
      { taskId: TASK_A, app: "hello", deploymentId: DEPLOYMENT, lines: 1 },
      { taskId: TASK_B, app: "hello", deploymentId: DEPLOYMENT, lines: 1 },
    ]);
    expect(outbox.pending().map((m) => m.id)).toEqual(["b2", "b3"]);

    const single = Buffer.byteLength(JSON.stringify({ type: "task.logs", v: 1, id: "c1", lines: [line(1)] }));
    const bounded = LogOutbox.open(join(tempDir(), "by-bytes"), { maxBytes: Math.floor(single * 2.5) });
    bounded.enqueue({ type: "task.logs", v: 1, id: "c1", lines: [line(1)] });
    bounded.enqueue({ type: "task.logs", v: 1, id: "c2", lines: [line(2)] });
    expect(bounded.enqueue({ type: "task.logs", v: 1, id: "c3", lines: [line(3)] })[0]?.lines).toBe(1);
    expect(bounded.pending().map((m) => m.id)).toEqual(["c2", "c3"]);
    expect(bounded.bytes).toBeLessThanOrEqual(bounded.maxBytes);
  });

  it("a dropped marker line carries its count forward instead of counting as one line", () => {
    const outbox = LogOutbox.open(join(tempDir(), "log-outbox"), { maxBatches: 1 });
    outbox.enqueue({ type: "task.logs", v: 1, id: "m1", lines: [{ ...line(0), stream: "stderr", line: droppedMarker(7) }, line(1), line(2)] });
    expect(outbox.enqueue({ type: "task.logs", v: 1, id: "m2", lines: [line(3)] })).toEqual([
      { taskId: TASK_A, app: "hello", deploymentId: DEPLOYMENT, lines: 9 },
    ]);
  });
});

describe("LogShipper", () => {
  it("sends a batch once 500 lines are waiting, stored before it is sent", () => {
    const h = makeShipper();
    for (let n = 0; n < MAX_LOG_BATCH + 10; n++) h.shipper.push(line(n));
    expect(h.sent).toHaveLength(1);
    expect(h.sent[0]?.lines).toHaveLength(MAX_LOG_BATCH);
    expect(h.outbox.has(h.sent[0]?.id ?? "")).toBe(true);
    h.shipper.flush();
    expect(h.sent.map((m) => m.lines.length)).toEqual([MAX_LOG_BATCH, 10]);
    expect(h.sent.flatMap((m) => m.lines.map((l) => l.line))).toEqual(Array.from({ length: MAX_LOG_BATCH + 10 }, (_, n) => `line ${n}`));
  });

  it("sends what a flush interval collected, without waiting for 500 lines", async () => {
    const h = makeShipper({ flushMs: 30 });
    h.shipper.push(line(1));
    h.shipper.push(line(2));
    expect(h.sent).toEqual([]);
    await until(() => h.sent.length === 1, "the timed flush");
    expect(h.sent[0]?.lines.map((l) => l.line)).toEqual(["line 1", "line 2"]);
  });

  it("keeps batches small enough for one frame however long the lines are", () => {
    const h = makeShipper();
    const big = "z".repeat(MAX_LINE_BYTES);
    for (let n = 0; n < 200; n++) h.shipper.push(line(n, TASK_A, big));
    h.shipper.flush();
    expect(h.sent.length).toBeGreaterThan(1);
    for (const message of h.sent) expect(Buffer.byteLength(JSON.stringify(message))).toBeLessThanOrEqual(1024 * 1024);
    expect(h.sent.reduce((sum, m) => sum + m.lines.length, 0)).toBe(200);
  });

  it("offline, the backlog stays within its cap: the oldest lines go and the next batch says how many", () => {
    const h = makeShipper({ maxBatches: 3, maxLines: 10 });
    h.online = false;
    // Batches of 10 into a backlog of 3: the fourth batch pushes out lines 0-9, and the fifth
    // (the marker for those, then lines 40-48) pushes out lines 10-19.
    for (let n = 0; n < 50; n++) h.shipper.push(line(n));
    expect(h.sent).toEqual([]);
    expect(h.outbox.size).toBe(3);
    expect(h.logs.filter((l) => l.msg === "log backlog full; dropped the oldest task log lines").length).toBe(2);
    const fifth = h.outbox.pending().at(-1);
    expect(fifth?.lines[0]).toMatchObject({ taskId: TASK_A, app: "hello", deploymentId: DEPLOYMENT, stream: "stderr", line: droppedMarker(10) });
    expect(fifth?.lines.slice(1).map((l) => l.line)).toEqual(Array.from({ length: 9 }, (_, n) => `line ${n + 40}`));
    expect(h.shipper.unannounced).toBe(10);

    h.online = true;
    h.shipper.push(line(50));
    h.shipper.flush();
    // The next batch announces lines 10-19 (its own enqueue then pushes out lines 20-29, still unannounced).
    expect(h.sent.map((m) => m.lines.map((l) => l.line))).toEqual([[droppedMarker(10), "line 49", "line 50"]]);
    expect(h.shipper.unannounced).toBe(10);
    const backlog = h.outbox.pending().flatMap((m) => m.lines.map((l) => l.line));
    expect(backlog).toEqual([
      ...Array.from({ length: 10 }, (_, n) => `line ${n + 30}`),
      droppedMarker(10),
      ...Array.from({ length: 9 }, (_, n) => `line ${n + 40}`),
      droppedMarker(10),
      "line 49",
      "line 50",
    ]);
    expect(droppedMarker(10)).toBe("[zectre] 10 log lines dropped while the control plane was unreachable");
  });
});
