import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { JobReturnBody } from "../../agent/src/jobs/returns.ts";
import { AgentConnection } from "../../agent/src/connection.ts";
import { collectFacts } from "../../agent/src/facts.ts";
import { ed25519Signer, generateNodeKey } from "../../agent/src/keys.ts";
import { Logger } from "../../agent/src/log.ts";
import { type ReportEnvelope, Scheduler, type SchedulerClock } from "../../agent/src/schedules/scheduler.ts";
import { openAgentState } from "../../agent/src/state/agent-state.ts";
import { dataDirPaths } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir } from "../../agent/src/state/files.ts";
import type { SettingsSnapshot } from "../../agent/src/state/settings.ts";
import { ReportMessage } from "../../protocol/jobs.ts";
import type { JsonObject, JsonValue } from "../../protocol/json.ts";
import { dispatchOf } from "./helpers/agent-jobs.ts";
import { useJobRunners } from "./helpers/agent-jobs.ts";
import { FakeControlPlane, until } from "./helpers/agent-control-plane.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** Agent-side schedules: timing on a fake clock, reconciling settings, overlap, reports through the outbox. */

const tempDir = useTempDirs();
const makeRunner = useJobRunners(tempDir);
const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);
const MIN = 60_000;

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

class FakeClock implements SchedulerClock {
  t = T0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  #seq = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Moves time forward, firing due timers in order (and letting their promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

interface Call {
  fn: string;
  args: JsonObject;
  timeout: number;
  id: string;
  at: number;
  finish: (body?: Partial<JobReturnBody>) => void;
}

let version = 0;
function snapshot(schedules: JsonValue): SettingsSnapshot {
  return { version: `v${++version}`, settings: { schedules } as SettingsSnapshot["settings"], receivedAt: new Date(T0).toISOString() };
}

const schedulers: Scheduler[] = [];
const heldCalls: Call[] = [];
afterEach(async () => {
  // Held fake runs are let go, so stop() (which waits for runs in flight) can return.
  for (const call of heldCalls.splice(0)) call.finish();
  for (const scheduler of schedulers.splice(0)) await scheduler.stop();
});

/** A scheduler on a fake clock with a fake runner: runs finish at once unless `hold` is set. */
function harness(options: { random?: () => number } = {}) {
  const clock = new FakeClock();
  const calls: Call[] = [];
  const reports: ReportEnvelope[] = [];
  const logs: Record<string, unknown>[] = [];
  const state = { hold: false };
  const logger = new Logger({ sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const runner = {
    runLocal: (fn: string, args: JsonObject, timeout: number, id: string) =>
      new Promise<JobReturnBody>((resolve) => {
        const startedAt = new Date(clock.now()).toISOString();
        const finish = (body: Partial<JobReturnBody> = {}) =>
          resolve({ success: true, retcode: 0, result: { ran: fn }, error: null, durationMs: 7, startedAt, ...body });
        const call = { fn, args, timeout, id, at: clock.now(), finish };
        calls.push(call);
        if (state.hold) heldCalls.push(call);
        else finish();
      }),
  };
  const scheduler = new Scheduler({ runner, enqueue: (message) => reports.push(message), logger, clock, ...(options.random ? { random: options.random } : {}) });
  schedulers.push(scheduler);
  const logged = (msg: string) => logs.filter((line) => line.msg === msg);
  return { clock, calls, reports, logs, logged, state, scheduler };
}

describe("timing", () => {
  it("runs an interval schedule at load + n × interval", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ ping: { function: "test.ping", interval: "15m" }, fast: { function: "test.ping", interval: 90 } }));
    await h.clock.advance(15 * MIN - 1);
    expect(h.calls.filter((c) => c.id.startsWith("schedule.ping.")).length).toBe(0);
    await h.clock.advance(1);
    await h.clock.advance(30 * MIN);
    const at = (name: string) => h.calls.filter((c) => c.id.startsWith(`schedule.${name}.`)).map((c) => c.at - T0);
    expect(at("ping")).toEqual([15 * MIN, 30 * MIN, 45 * MIN]);
    expect(at("fast").slice(0, 3)).toEqual([90_000, 180_000, 270_000]);
    expect(at("fast").length).toBe(30);
    expect(h.calls[0]).toMatchObject({ fn: "test.ping", args: {}, timeout: 60 });
  });

  it("runs a cron schedule on its UTC minutes", async () => {
    const h = harness();
    h.clock.t = T0 + 3 * MIN;
    h.scheduler.load(snapshot({ tick: { function: "test.ping", cron: "*/10 * * * *" } }));
    expect(h.scheduler.nextRunAt("tick")).toBe(T0 + 10 * MIN);
    await h.clock.advance(20 * MIN);
    expect(h.calls.map((c) => c.at - T0)).toEqual([10 * MIN, 20 * MIN]);
  });

  it("adds a splay within [0, splay] seconds to each run, without drifting the interval", async () => {
    const randoms = [0, 0.5, 0.999_999, 0.999_999];
    const h = harness({ random: () => randoms.shift() ?? 0 });
    h.scheduler.load(snapshot({ s: { function: "test.ping", interval: "10m", splay: 30 } }));
    await h.clock.advance(41 * MIN);
    const offsets = h.calls.map((c, i) => c.at - T0 - (i + 1) * 10 * MIN);
    expect(offsets).toEqual([0, 15_000, 30_000, 30_000]);
    for (const offset of offsets) expect(offset).toBeGreaterThanOrEqual(0);
    for (const offset of offsets) expect(offset).toBeLessThanOrEqual(30_000);
  });

  it("keeps splay within bounds for many random draws", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ s: { function: "test.ping", interval: 60, splay: 5 } }));
    await h.clock.advance(200 * MIN);
    expect(h.calls.length).toBeGreaterThanOrEqual(199);
    h.calls.forEach((c, i) => {
      const offset = c.at - T0 - (i + 1) * MIN;
      expect(offset).toBeGreaterThanOrEqual(0);
      expect(offset).toBeLessThanOrEqual(5_000);
    });
  });

  it("run_on_start runs once at load, not again on a reload that leaves it unchanged", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ boot: { function: "test.ping", interval: "1h", run_on_start: true }, plain: { function: "test.ping", interval: "1h" } }));
    await h.clock.advance(0);
    expect(h.calls.map((c) => c.id.split(".")[1])).toEqual(["boot"]);
    h.scheduler.load(snapshot({ boot: { function: "test.ping", interval: "1h", run_on_start: true }, plain: { function: "test.ping", interval: "1h" } }));
    await h.clock.advance(MIN);
    expect(h.calls.length).toBe(1);
    await h.clock.advance(59 * MIN);
    expect(h.calls.map((c) => c.id.split(".")[1]).sort()).toEqual(["boot", "boot", "plain"]);
  });

  it("does not schedule enabled:false", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ off: { function: "test.ping", interval: 60, enabled: false, run_on_start: true } }));
    await h.clock.advance(24 * 60 * MIN);
    expect(h.calls).toEqual([]);
    expect(h.scheduler.scheduled).toEqual([]);
    expect(h.logged("schedule is disabled")[0]).toMatchObject({ schedule: "off" });
  });
});

describe("reloading", () => {
  it("reschedules changed schedules, stops removed ones and leaves unchanged ones alone", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ a: { function: "test.ping", interval: "1h" }, b: { function: "test.ping", interval: "1h" }, c: { function: "test.ping", interval: "1h" } }));
    await h.clock.advance(30 * MIN);
    h.scheduler.load(snapshot({ a: { function: "test.ping", interval: "10m" }, c: { function: "test.ping", interval: "1h" } }));
    expect(h.scheduler.scheduled.sort()).toEqual(["a", "c"]);
    expect(h.logged("schedule removed")).toMatchObject([{ schedule: "b" }]);
    expect(h.logged("schedule changed")).toMatchObject([{ schedule: "a" }]);
    await h.clock.advance(40 * MIN);
    const at = (name: string) => h.calls.filter((c) => c.id.startsWith(`schedule.${name}.`)).map((c) => c.at - T0);
    expect(at("a")).toEqual([40 * MIN, 50 * MIN, 60 * MIN, 70 * MIN]);
    expect(at("b")).toEqual([]);
    // c kept its original timing: the reload did not restart it.
    expect(at("c")).toEqual([60 * MIN]);
    // Removing the setting stops everything.
    h.scheduler.load(snapshot({}));
    const before = h.calls.length;
    await h.clock.advance(5 * 60 * MIN);
    expect(h.calls.length).toBe(before);
    expect(h.clock.timers.size).toBe(0);
  });

  it("follows a settings store: the current snapshot at attach, then every change", async () => {
    const h = harness();
    const listeners: ((s: SettingsSnapshot) => void)[] = [];
    const store = {
      currentSettings: () => snapshot({ boot: { function: "test.ping", interval: 60, run_on_start: true } }),
      onChange: (listener: (s: SettingsSnapshot) => void) => {
        listeners.push(listener);
        return () => undefined;
      },
    };
    h.scheduler.attach(store);
    await h.clock.advance(0);
    expect(h.calls.length).toBe(1);
    for (const listener of listeners) listener(snapshot({ other: { function: "test.echo", args: { _: ["hi"] }, interval: 60 } }));
    expect(h.scheduler.scheduled).toEqual(["other"]);
    await h.clock.advance(MIN);
    expect(h.calls.map((c) => c.fn)).toEqual(["test.ping", "test.echo"]);
    expect(h.calls[1]?.args).toEqual({ _: ["hi"] });
  });

  it("skips invalid schedules with a warning and keeps the valid ones", () => {
    const h = harness();
    h.scheduler.load(
      snapshot({
        neither: { function: "test.ping" },
        badunit: { function: "test.ping", interval: "5x" },
        badcron: { function: "test.ping", cron: "61 * * * *" },
        never: { function: "test.ping", cron: "0 0 30 2 *" },
        extra: { function: "test.ping", interval: 5, nope: true },
        "has space": { function: "test.ping", interval: 5 },
        good: { function: "test.ping", interval: 5 },
      }),
    );
    expect(h.scheduler.scheduled).toEqual(["good"]);
    const problems = Object.fromEntries(h.logged("ignored an invalid schedule").map((line) => [line.schedule, line.problem]));
    expect(Object.keys(problems).sort()).toEqual(["badcron", "badunit", "extra", "has space", "neither", "never"]);
    expect(problems.neither).toContain("give exactly one of interval or cron");
    expect(problems.badunit).toMatch(/^interval: /);
    expect(problems.badcron).toContain("minute field '61' has 61, outside 0-59");
    expect(problems.never).toContain("never matches");
    expect(problems.extra).toContain("nope");
    for (const line of h.logged("ignored an invalid schedule")) expect(line.level).toBe("warn");

    h.scheduler.load({ version: "x", settings: { schedules: "nope" }, receivedAt: "" });
    expect(h.scheduler.scheduled).toEqual([]);
    expect(h.logged("ignored the schedules setting: it is not an object of schedules by name").length).toBe(1);
  });
});

describe("running and reporting", () => {
  it("skips a run while the previous one of the same schedule still goes", async () => {
    const h = harness();
    h.state.hold = true;
    h.scheduler.load(snapshot({ slow: { function: "test.sleep", interval: 60 } }));
    await h.clock.advance(MIN);
    await h.clock.advance(MIN);
    expect(h.calls.length).toBe(1);
    expect(h.scheduler.running).toEqual(["slow"]);
    expect(h.logged("schedule still running; skipped this run")).toMatchObject([{ level: "warn", schedule: "slow", function: "test.sleep" }]);
    h.calls[0]?.finish();
    await flush();
    await h.clock.advance(MIN);
    expect(h.calls.length).toBe(2);
  });

  it("with return_job, enqueues a valid job.report per run with a unique id; without it, only logs", async () => {
    const h = harness();
    h.scheduler.load(
      snapshot({
        up: { function: "cmd.run", args: { cmd: "uptime" }, interval: 60, return_job: true },
        quiet: { function: "test.ping", interval: 60 },
      }),
    );
    await h.clock.advance(2 * MIN);
    expect(h.reports.length).toBe(2);
    for (const report of h.reports) {
      const parsed = ReportMessage.parse(report);
      expect(parsed).toMatchObject({
        type: "job.report",
        v: 1,
        function: "cmd.run",
        args: { cmd: "uptime" },
        metadata: { schedule: "up" },
        return: { success: true, retcode: 0, result: { ran: "cmd.run" }, error: null, durationMs: 7 },
      });
      expect(parsed.return.startedAt).not.toBeNull();
    }
    expect(new Set(h.reports.map((r) => r.id)).size).toBe(2);
    // The id is the one the run was given: stable for that run.
    expect(h.reports.map((r) => r.id)).toEqual(h.calls.filter((c) => c.fn === "cmd.run").map((c) => c.id));
    const ran = h.logged("schedule ran");
    expect(ran.length).toBe(4);
    expect(ran.find((line) => line.schedule === "quiet")).toMatchObject({ function: "test.ping", success: true, durationMs: 7 });
  });

  it("reports failures too", async () => {
    const h = harness();
    h.state.hold = true;
    h.scheduler.load(snapshot({ f: { function: "cmd.run", args: { cmd: "false" }, interval: 60, return_job: true } }));
    await h.clock.advance(MIN);
    h.calls[0]?.finish({ success: false, retcode: 1, result: { stdout: "" }, error: "exit status 1" });
    await h.scheduler.idle();
    expect(ReportMessage.parse(h.reports[0]).return).toMatchObject({ success: false, retcode: 1, error: "exit status 1" });
    expect(h.logged("schedule ran")[0]).toMatchObject({ schedule: "f", success: false, retcode: 1 });
  });

  it("stop disarms every schedule", async () => {
    const h = harness();
    h.scheduler.load(snapshot({ a: { function: "test.ping", interval: 60 } }));
    await h.scheduler.stop();
    await h.clock.advance(10 * MIN);
    expect(h.calls).toEqual([]);
    expect(h.scheduler.runNow("a")).toBe(false);
  });
});

describe("with the real JobRunner", () => {
  const clocked = () => {
    const runnerHarness = makeRunner();
    const clock = new FakeClock();
    const reports: ReportEnvelope[] = [];
    const scheduler = new Scheduler({ runner: runnerHarness.runner, enqueue: (m) => reports.push(m), logger: new Logger({ sink: () => undefined }), clock });
    schedulers.push(scheduler);
    return { ...runnerHarness, clock, reports, scheduler };
  };

  it("applies the schedule's timeout", async () => {
    const h = clocked();
    h.scheduler.load(snapshot({ nap: { function: "test.sleep", args: { seconds: 10 }, interval: 60, timeout: 1, return_job: true, run_on_start: true } }));
    await until(() => h.reports.length === 1, "the report");
    expect(ReportMessage.parse(h.reports[0]).return).toMatchObject({ success: false, retcode: null, error: "timed out after 1s" });
    // Nothing went to the runner's return channel or ledger: a schedule run is not a dispatched job.
    expect(h.returns).toEqual([]);
  });

  it("queues a mutating scheduled function behind a running mutating job, and stop aborts it", async () => {
    const h = clocked();
    h.runner.accept(dispatchOf("cmd.run", { cmd: "sleep 30" }));
    await until(() => h.runner.active.length === 1, "the dispatched job to start");
    await new Promise((resolve) => setTimeout(resolve, 50));
    h.scheduler.load(snapshot({ w: { function: "file.write", args: { path: join(tempDir(), "x"), contents: "x" }, interval: 60, return_job: true, run_on_start: true } }));
    await until(() => h.runner.queued === 1, "the scheduled write to queue");
    expect(h.runner.active.some((id) => id.startsWith("schedule.w."))).toBe(true);
    await Promise.all([h.scheduler.stop(), h.runner.stop()]);
    expect(ReportMessage.parse(h.reports[0]).return).toMatchObject({ success: false, error: "agent stopped" });
    expect(await h.runner.runLocal("test.ping", {}, 5, "after-stop")).toMatchObject({ success: false, error: "agent stopped" });
  });
});

describe("delivery", () => {
  it("a report made while disconnected survives a restart and is delivered and acked once connected", async () => {
    const plane = await FakeControlPlane.start();
    try {
      const dir = join(tempDir(), "agent");
      ensurePrivateDir(dir);
      const paths = dataDirPaths(dir);
      const logger = new Logger({ sink: () => undefined });
      const key = generateNodeKey();
      plane.register("web-1", key.publicKey, "active");
      const makeConnection = (state: ReturnType<typeof openAgentState>) =>
        new AgentConnection({
          identity: { url: plane.url, org: plane.org, nodeId: "web-1" },
          signer: ed25519Signer(key.privateKey),
          settings: state.settings,
          outbox: state.outbox,
          appliedActions: state.appliedActions,
          facts: () => collectFacts({}),
          logger,
          backoff: { baseMs: 5, capMs: 20 },
        });

      // First life: never connected. The run_on_start report waits in the outbox.
      const first = openAgentState(paths);
      const offline = makeConnection(first);
      const h = harness();
      const scheduler = new Scheduler({
        runner: { runLocal: async (fn) => ({ success: true, retcode: 0, result: { fn }, error: null, durationMs: 3, startedAt: new Date().toISOString() }) },
        enqueue: (message) => offline.enqueue(message),
        logger,
        clock: h.clock,
      });
      schedulers.push(scheduler);
      scheduler.load(snapshot({ up: { function: "test.ping", interval: "1h", run_on_start: true, return_job: true } }));
      await scheduler.idle();
      expect(first.outbox.size).toBe(1);
      const id = first.outbox.pending()[0]?.id as string;
      await scheduler.stop();
      first.close();

      // Second life: the outbox is read back from disk and flushed after the welcome.
      const second = openAgentState(paths);
      expect(second.outbox.has(id)).toBe(true);
      const online = makeConnection(second);
      const ended = online.run();
      try {
        const report = await until(() => plane.reports.get(id), "the report at the control plane");
        expect(report).toMatchObject({ type: "job.report", function: "test.ping", metadata: { schedule: "up" }, return: { success: true, result: { fn: "test.ping" } } });
        expect(plane.invalidReports).toEqual([]);
        await until(() => second.outbox.size === 0, "the ack to empty the outbox");
      } finally {
        await online.stop();
        await ended;
        second.close();
      }
    } finally {
      await plane.close();
    }
  });
});
