import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dispatchOf, groupMembers, processAlive, testJid, useJobRunners } from "./helpers/agent-jobs.ts";
import { until } from "./helpers/agent-control-plane.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** The runner's scheduling: the mutation queue, dry runs, cancel, timeouts, dedup and stop. */

const tempDir = useTempDirs();
const makeRunner = useJobRunners(tempDir);

/** Waits until the shell wrote its pid (= its process group) and the group has at least `count` live members. */
async function liveGroup(pidFile: string, count: number): Promise<{ pgid: number; members: number[] }> {
  const pgid = await until(() => existsSync(pidFile) && Number(readFileSync(pidFile, "utf8")), `the pid in ${pidFile}`);
  const members = await until(() => {
    const live = groupMembers(pgid);
    return live.length >= count ? live : undefined;
  }, `${count} processes in group ${pgid}`);
  return { pgid, members };
}

describe("concurrency", () => {
  it("runs read-only functions at once while mutating ones queue one at a time, in order", async () => {
    const h = makeRunner();
    const order: string[] = [];
    h.runner.on("finished", (message) => order.push(message.jid));
    const [slow, queued, ping, nap] = [testJid(), testJid(), testJid(), testJid()];
    const log = join(tempDir(), "log");
    h.runner.accept(dispatchOf("cmd.run", { cmd: `echo first-start >> ${log}; sleep 0.5; echo first-end >> ${log}` }, { jid: slow }));
    h.runner.accept(dispatchOf("cmd.run", { cmd: `echo second >> ${log}` }, { jid: queued }));
    await until(() => h.runner.queued === 1, "the second command to queue");
    h.runner.accept(dispatchOf("test.ping", {}, { jid: ping }));
    h.runner.accept(dispatchOf("test.sleep", { seconds: 0.1 }, { jid: nap }));

    await h.returnOf(nap);
    // Both read-only jobs are done while the second command still waits for the first.
    expect(order).toEqual([ping, nap]);
    expect(h.runner.queued).toBe(1);
    expect(readFileSync(log, "utf8")).toBe("first-start\n");

    const second = await h.returnOf(queued);
    expect(second.return.success).toBe(true);
    expect(order).toEqual([ping, nap, slow, queued]);
    expect(readFileSync(log, "utf8")).toBe("first-start\nfirst-end\nsecond\n");
    // Its duration counts the time it waited in the queue.
    expect(second.return.durationMs).toBeGreaterThanOrEqual(400);
  });

  it("refuses a mutating job at once with 'agent busy' when the queue is full", async () => {
    const h = makeRunner({ queueCapacity: 1 });
    const marker = join(tempDir(), "ran");
    const running = dispatchOf("cmd.run", { cmd: "sleep 30" });
    const waiting = dispatchOf("file.write", { path: marker, contents: "x" });
    h.runner.accept(running);
    h.runner.accept(waiting);
    await until(() => h.runner.queued === 1, "one queued job");
    const refused = await h.run("cmd.run", { cmd: `touch ${marker}` });
    expect(refused).toMatchObject({ success: false, retcode: null, result: null, error: "agent busy" });
    expect(refused.durationMs).toBeLessThan(200);
    // Read-only jobs are not affected by a full queue.
    expect((await h.run("test.ping")).success).toBe(true);
    expect(existsSync(marker)).toBe(false);
    h.runner.cancel(running.jid);
    h.runner.cancel(waiting.jid);
    await h.runner.idle();
  });
});

describe("dry runs (test: true)", () => {
  it("does not execute mutating functions and says what they would do", async () => {
    const h = makeRunner();
    const file = join(tempDir(), "touched");
    const cmd = await h.run("cmd.run", { cmd: `touch ${file}` }, { test: true });
    expect(cmd).toMatchObject({ success: true, retcode: 0, error: null, result: { test: true, would: `run "touch ${file}" with /bin/sh` } });
    const write = await h.run("file.write", { path: file, contents: "hello", mode: "0600" }, { test: true });
    expect(write).toMatchObject({ success: true, result: { test: true, would: `write 5 bytes to ${file} with mode 0600` } });
    expect(existsSync(file)).toBe(false);
    // Bad arguments fail a dry run too, as the real run would.
    expect(await h.run("cmd.run", {}, { test: true })).toMatchObject({ success: false, error: "cmd.run needs a command (cmd= or positional arguments)" });
    // Read-only functions run as usual.
    expect(await h.run("test.echo", { text: "x" }, { test: true })).toMatchObject({ success: true, result: "x" });
  });
});

describe("cancel and timeout", () => {
  it("cancels a running command: its process group is killed and the return says 'execution canceled'", async () => {
    const h = makeRunner();
    const pidFile = join(tempDir(), "pgid");
    const dispatch = dispatchOf("cmd.run", { cmd: `echo $$ > ${pidFile}; echo started; sleep 30 & sleep 30` });
    h.runner.accept(dispatch);
    const { pgid, members } = await liveGroup(pidFile, 3);
    expect(h.runner.cancel(dispatch.jid)).toBe(1);
    const ret = (await h.returnOf(dispatch.jid)).return;
    expect(ret).toMatchObject({ success: false, retcode: null, error: "execution canceled", result: { stdout: "started\n", stderr: "", retcode: null } });
    expect(ret.durationMs).toBeLessThan(3000);
    expect(members.filter(processAlive)).toEqual([]);
    expect(groupMembers(pgid)).toEqual([]);
  });

  it("cancels a job while it is queued: it leaves the queue and never runs", async () => {
    const h = makeRunner();
    const marker = join(tempDir(), "never");
    const blocker = dispatchOf("cmd.run", { cmd: "sleep 30" });
    const queued = dispatchOf("cmd.run", { cmd: `touch ${marker}` });
    h.runner.accept(blocker);
    h.runner.accept(queued);
    await until(() => h.runner.queued === 1, "the queued job");
    h.runner.cancel(queued.jid);
    expect((await h.returnOf(queued.jid)).return).toMatchObject({ success: false, retcode: null, result: null, error: "execution canceled" });
    expect(h.runner.queued).toBe(0);
    h.runner.cancel(blocker.jid);
    expect((await h.returnOf(blocker.jid)).return.error).toBe("execution canceled");
    expect(existsSync(marker)).toBe(false);
  });

  it("cancels a read-only sleep, and ignores cancels for unknown or finished jobs", async () => {
    const h = makeRunner();
    const sleeping = dispatchOf("test.sleep", { seconds: 30 });
    h.runner.accept(sleeping);
    await until(() => h.logs.some((line) => line.msg === "job started" && line.jid === sleeping.jid), "the sleep to start");
    h.runner.cancel(sleeping.jid);
    expect((await h.returnOf(sleeping.jid)).return).toMatchObject({ success: false, retcode: null, error: "execution canceled" });

    expect(h.runner.cancel(sleeping.jid)).toBe(0);
    expect(h.runner.cancel(testJid())).toBe(0);
    expect(h.returns).toHaveLength(1);
    expect(h.logs.filter((line) => line.msg === "cancel for a job that is not running; ignored")).toHaveLength(2);
  });

  it("a cancel that arrives before the job started still cancels it", async () => {
    const h = makeRunner();
    const dispatch = dispatchOf("test.ping");
    h.runner.accept(dispatch);
    h.runner.cancel(dispatch.jid);
    expect((await h.returnOf(dispatch.jid)).return).toMatchObject({ success: false, error: "execution canceled" });
  });

  it("the job's timeout kills a command's whole process tree", async () => {
    const h = makeRunner();
    const pidFile = join(tempDir(), "pgid");
    const dispatch = dispatchOf("cmd.run", { cmd: `echo $$ > ${pidFile}; sleep 30 & sleep 30` }, { timeout: 1 });
    h.runner.accept(dispatch);
    const { pgid, members } = await liveGroup(pidFile, 3);
    const sleeps = members.filter((pid) => pid !== pgid);
    expect(sleeps.length).toBeGreaterThanOrEqual(2);
    const ret = (await h.returnOf(dispatch.jid)).return;
    expect(ret).toMatchObject({ success: false, retcode: null, error: "timed out after 1s" });
    expect(ret.durationMs).toBeGreaterThanOrEqual(950);
    expect(ret.durationMs).toBeLessThan(3000);
    for (const pid of [pgid, ...sleeps]) expect(processAlive(pid), `pid ${pid}`).toBe(false);
  });

  it("times out a job that waited too long in the queue", async () => {
    const h = makeRunner();
    const blocker = dispatchOf("cmd.run", { cmd: "sleep 30" });
    h.runner.accept(blocker);
    const late = join(tempDir(), "late");
    const ret = await h.run("file.write", { path: late, contents: "" }, { timeout: 1 });
    expect(ret).toMatchObject({ success: false, retcode: null, error: "timed out after 1s" });
    expect(existsSync(late)).toBe(false);
    h.runner.cancel(blocker.jid);
  });
});

describe("dedup and stop", () => {
  it("runs a (jid, epoch) once, even across a restart, and a higher epoch again", async () => {
    const dir = tempDir();
    const ledgerPath = join(dir, "ledger.jsonl");
    const counter = join(dir, "count");
    const h = makeRunner({ ledgerPath });
    const dispatch = dispatchOf("cmd.run", { cmd: `echo run >> ${counter}` });
    expect(h.runner.accept(dispatch)).toBe("started");
    // Recorded durably before it runs.
    expect(readFileSync(ledgerPath, "utf8")).toContain(`"id":"${dispatch.jid}","epoch":1`);
    expect(h.runner.accept(dispatch)).toBe("duplicate");
    await h.runner.idle();
    expect(h.runner.accept(dispatch)).toBe("duplicate");
    expect(readFileSync(counter, "utf8")).toBe("run\n");
    expect(h.returns).toHaveLength(1);

    expect(h.runner.accept({ ...dispatch, epoch: 2 })).toBe("started");
    await h.returnOf(dispatch.jid, 2);
    expect(readFileSync(counter, "utf8")).toBe("run\nrun\n");
    // A stale resend of epoch 1 after epoch 2 ran is not run either.
    expect(h.runner.accept(dispatch)).toBe("duplicate");
    expect(h.returns.map((r) => [r.id, r.epoch])).toEqual([
      [`return.${dispatch.jid}.1`, 1],
      [`return.${dispatch.jid}.2`, 2],
    ]);

    await h.runner.stop();
    h.ledger.close();
    const rebooted = makeRunner({ ledgerPath });
    expect(rebooted.runner.accept({ ...dispatch, epoch: 2 })).toBe("duplicate");
    await rebooted.runner.idle();
    expect(readFileSync(counter, "utf8")).toBe("run\nrun\n");
    expect(rebooted.returns).toEqual([]);
  });

  it("stop aborts running and queued jobs with 'agent stopped', stores their returns, and refuses new ones", async () => {
    const h = makeRunner();
    const running = dispatchOf("cmd.run", { cmd: "sleep 30" });
    const queued = dispatchOf("cmd.run", { cmd: "true" });
    const sleeping = dispatchOf("test.sleep", { seconds: 30 });
    for (const dispatch of [running, queued, sleeping]) h.runner.accept(dispatch);
    await until(() => h.runner.queued === 1, "the queued job");
    const started = Date.now();
    await h.runner.stop();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(h.returns.map((r) => r.jid).sort()).toEqual([running.jid, queued.jid, sleeping.jid].sort());
    for (const message of h.returns) expect(message.return).toMatchObject({ success: false, retcode: null, error: "agent stopped" });
    expect(h.runner.active).toEqual([]);
    expect(() => h.runner.accept(dispatchOf("test.ping"))).toThrow("the agent is stopping; not accepting jobs");
  });

  it("a return the outbox cannot store is logged, and the runner goes on", async () => {
    const h = makeRunner({
      enqueue: () => {
        throw new Error("disk full");
      },
    });
    const dispatch = dispatchOf("test.ping");
    h.runner.accept(dispatch);
    await h.runner.idle();
    expect(h.logs.find((line) => line.msg === "could not store a job return")).toMatchObject({ level: "error", jid: dispatch.jid, error: "disk full" });
    expect(h.logs.find((line) => line.msg === "job finished")).toMatchObject({ jid: dispatch.jid, success: true });
  });
});
