import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import type { CommandRun, CommandRunner } from "../../agent/src/state-apply/commands.ts";
import { type ApplyOptions, type ApplyResult, applyStates, type StateResult } from "../../agent/src/state-apply/engine.ts";
import { stateFunctions, stateNames } from "../../agent/src/state-apply/function.ts";
import { FunctionOutcome } from "../../agent/src/jobs/types.ts";
import { groupMembers } from "./helpers/agent-jobs.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** state.apply's engine against real files in a temp dir; pkg/service through a recording fake runner. */

const tempDir = useTempDirs();

const NODE = { id: "web1", grains: { os: "linux", role: "web" } };

/** Writes a state tree: relative path → text. */
function writeTree(files: Record<string, string>): string {
  const tree = join(tempDir(), "tree");
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(tree, path)), { recursive: true });
    writeFileSync(join(tree, path), text);
  }
  return tree;
}

function apply(tree: string, names: string[] | null, extra: Partial<ApplyOptions> = {}): Promise<ApplyResult> {
  return applyStates({ tree, names, node: NODE, test: false, signal: new AbortController().signal, killGraceMs: 200, ...extra });
}

function byId(result: ApplyResult, id: string): StateResult {
  const found = result.results.find((r) => r.id === id);
  if (!found) throw new Error(`no result for ${id}: ${JSON.stringify(result)}`);
  return found;
}

const mode = (path: string) => statSync(path).mode & 0o7777;

/** A fake host for pkg/service: which programs exist, what is installed/active; records every argv. */
function fakeHost(setup: { programs: string[]; installed?: string[]; active?: string[]; enabled?: string[] }) {
  const calls: string[] = [];
  const installed = new Set(setup.installed ?? []);
  const active = new Set(setup.active ?? []);
  const enabled = new Set(setup.enabled ?? []);
  const has = (program: string) => setup.programs.includes(program);
  const done = (code: number, stdout = ""): CommandRun => ({ code, stdout, stderr: "", error: null });
  const runner: CommandRunner = async (argv) => {
    calls.push(argv.join(" "));
    const [program, ...args] = argv;
    const last = args.at(-1) ?? "";
    if (program === undefined || !has(program === "env" ? (args[1] ?? "") : program)) return done(127);
    switch (program) {
      case "dpkg-query":
        if (args[0] === "--version") return done(0);
        return installed.has(last) ? done(0, "install ok installed") : done(1);
      case "rpm":
        if (args[0] === "--version") return done(0);
        return done(installed.has(last) ? 0 : 1);
      case "env":
      case "dnf": {
        const rest = program === "env" ? args.slice(1) : argv;
        const pkgs = rest.slice(rest.indexOf("-y") + 1).filter((word) => word !== "-q");
        for (const pkg of pkgs) rest[1] === "install" ? installed.add(pkg) : installed.delete(pkg);
        return done(0);
      }
      case "systemctl":
        switch (args[0]) {
          case "is-active":
            return done(active.has(last) ? 0 : 3);
          case "is-enabled":
            return done(enabled.has(last) ? 0 : 1);
          case "start":
            active.add(last);
            return done(0);
          case "stop":
            active.delete(last);
            return done(0);
          case "enable":
            enabled.add(last);
            return done(0);
        }
    }
    return done(2);
  };
  return { runner, calls, installed, active, enabled };
}

describe("top.yaml and state files", () => {
  const files = (out: string) => ({
    "top.yaml": `"*": [base]\n"web*": [web.nginx]\n"G@os:linux and not G@role:db": [linux]\n"db*": [db]\n`,
    "base.yaml": `base-file:\n  file.managed:\n    - name: ${out}/base\n    - contents: base\n`,
    "web/nginx.yaml": `nginx-conf:\n  file.managed:\n    - name: ${out}/nginx\n    - contents: nginx\n`,
    "linux/init.yaml": `linux-file:\n  file.managed:\n    - name: ${out}/linux\n`,
    "db.yaml": `db-file:\n  file.managed:\n    - name: ${out}/db\n`,
  });

  it("applies what top.yaml assigns by glob and G@ grain", async () => {
    const out = tempDir();
    const tree = writeTree(files(out));
    const web = await apply(tree, null);
    expect(web.success).toBe(true);
    expect(web.states).toEqual(["base", "web.nginx", "linux"]);
    expect(web.results.map((r) => r.id)).toEqual(["base-file", "nginx-conf", "linux-file"]);
    expect(readFileSync(join(out, "nginx"), "utf8")).toBe("nginx");
    expect(existsSync(join(out, "linux"))).toBe(true);
    expect(existsSync(join(out, "db"))).toBe(false);

    const out2 = tempDir();
    const db = await applyStates({ tree: writeTree(files(out2)), names: null, node: { id: "db1", grains: { os: "linux", role: "db" } }, test: false, signal: new AbortController().signal });
    expect(db.states).toEqual(["base", "db"]);
    expect(existsSync(join(out2, "nginx"))).toBe(false);
    expect(existsSync(join(out2, "linux"))).toBe(false);
  });

  it("applies one named state regardless of top.yaml, and reports a missing one", async () => {
    const out = tempDir();
    const tree = writeTree(files(out));
    const result = await apply(tree, ["db"]);
    expect(result.success).toBe(true);
    expect(result.results.map((r) => `${r.module} ${r.id}`)).toEqual(["file.managed db-file"]);
    expect(existsSync(join(out, "db"))).toBe(true);
    expect(existsSync(join(out, "base"))).toBe(false);

    const missing = await apply(tree, ["nope.deeper"]);
    expect(missing.success).toBe(false);
    expect(missing.errors[0]).toMatch(/state 'nope.deeper' not found .*nope\/deeper\.yaml/);
    const traversal = await apply(tree, ["../etc"]);
    expect(traversal.errors[0]).toMatch(/not a state name/);
  });
});

describe("file states", () => {
  it("file.managed creates with mode, diffs a change, and changes nothing the second time", async () => {
    const out = tempDir();
    const path = join(out, "motd");
    const tree = writeTree({ "motd.yaml": `motd:\n  file.managed:\n    - name: ${path}\n    - contents: "hello\\nworld\\n"\n    - mode: "0640"\n` });
    const first = byId(await apply(tree, ["motd"]), "motd");
    expect(first).toMatchObject({ module: "file.managed", name: path, result: true, changed: true });
    expect(first.diff).toMatchObject({ created: true, mode: { old: null, new: "0640" } });
    expect(String(first.diff?.contents)).toContain("+hello\n+world");
    expect(readFileSync(path, "utf8")).toBe("hello\nworld\n");
    expect(mode(path)).toBe(0o640);

    const second = byId(await apply(tree, ["motd"]), "motd");
    expect(second).toMatchObject({ result: true, changed: false, diff: null });

    writeFileSync(path, "hello\nthere\n");
    const { chmodSync } = await import("node:fs");
    chmodSync(path, 0o600);
    const third = byId(await apply(tree, ["motd"]), "motd");
    expect(third).toMatchObject({ result: true, changed: true });
    expect(third.diff?.mode).toEqual({ old: "0600", new: "0640" });
    expect(String(third.diff?.contents)).toMatch(/ hello\n-there\n\+world/);
    expect(readFileSync(path, "utf8")).toBe("hello\nworld\n");
    expect(mode(path)).toBe(0o640);
  });

  it("file.managed refuses a missing parent unless makedirs", async () => {
    const out = tempDir();
    const tree = writeTree({
      "s.yaml": `no-parent:\n  file.managed:\n    - name: ${out}/a/b/f\n    - contents: x\nwith-parent:\n  file.managed:\n    - name: ${out}/c/d/f\n    - contents: x\n    - makedirs: true\n`,
    });
    const result = await apply(tree, ["s"]);
    expect(result.success).toBe(false);
    expect(byId(result, "no-parent")).toMatchObject({ result: false, changed: false });
    expect(byId(result, "no-parent").comment).toMatch(/parent directory .*a\/b does not exist/);
    expect(readFileSync(join(out, "c/d/f"), "utf8")).toBe("x");
  });

  it("file.directory creates (makedirs), fixes the mode, then is a no-op", async () => {
    const out = tempDir();
    const dir = join(out, "x/y/z");
    const tree = writeTree({ "d.yaml": `dir:\n  file.directory:\n    - name: ${dir}\n    - mode: 750\n    - makedirs: true\n` });
    expect(byId(await apply(tree, ["d"]), "dir")).toMatchObject({ result: true, changed: true, diff: { created: true } });
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(mode(dir)).toBe(0o750);
    expect(byId(await apply(tree, ["d"]), "dir")).toMatchObject({ result: true, changed: false });
    const { chmodSync } = await import("node:fs");
    chmodSync(dir, 0o700);
    expect(byId(await apply(tree, ["d"]), "dir")).toMatchObject({ changed: true, diff: { mode: { old: "0700", new: "0750" } } });
  });

  it("file.absent removes a file and a directory, then is a no-op", async () => {
    const out = tempDir();
    writeFileSync(join(out, "f"), "x");
    mkdirSync(join(out, "d/e"), { recursive: true });
    writeFileSync(join(out, "d/e/g"), "x");
    const tree = writeTree({ "a.yaml": `${out}/f:\n  file.absent: []\ngone-dir:\n  file.absent:\n    - name: ${out}/d\n` });
    const first = await apply(tree, ["a"]);
    expect(first.results.map((r) => [r.name, r.changed])).toEqual([
      [`${out}/f`, true],
      [`${out}/d`, true],
    ]);
    expect(existsSync(join(out, "f"))).toBe(false);
    expect(existsSync(join(out, "d"))).toBe(false);
    const second = await apply(tree, ["a"]);
    expect(second.success).toBe(true);
    expect(second.results.every((r) => r.result === true && !r.changed)).toBe(true);
  });
});

describe("idempotence", () => {
  it("a second apply of mixed states changes nothing", async () => {
    const out = tempDir();
    writeFileSync(join(out, "old"), "x");
    const tree = writeTree({
      "all.yaml": [
        `dir:\n  file.directory:\n    - name: ${out}/etc\n    - mode: "0755"\n`,
        `conf:\n  file.managed:\n    - name: ${out}/etc/app.conf\n    - contents: "port: 80\\n"\n    - mode: "0600"\n    - require: [dir]\n`,
        `old:\n  file.absent:\n    - name: ${out}/old\n`,
        `init:\n  cmd.run:\n    - name: touch ${out}/initialized\n    - creates: ${out}/initialized\n`,
      ].join(""),
    });
    const first = await apply(tree, ["all"]);
    expect(first.success).toBe(true);
    expect(first.results.map((r) => r.changed)).toEqual([true, true, true, true]);
    expect(readFileSync(join(out, "etc/app.conf"), "utf8")).toBe("port: 80\n");
    const second = await apply(tree, ["all"]);
    expect(second.success).toBe(true);
    expect(second.results.map((r) => [r.id, r.result, r.changed, r.diff])).toEqual([
      ["dir", true, false, null],
      ["conf", true, false, null],
      ["old", true, false, null],
      ["init", true, false, null],
    ]);
  });
});

describe("cmd.run", () => {
  it("runs through sh, honouring creates, onlyif and unless", async () => {
    const out = tempDir();
    const log = join(out, "log");
    const tree = writeTree({
      "c.yaml": [
        `plain:\n  cmd.run:\n    - name: echo plain >> ${log}\n    - cwd: ${out}`,
        `creates:\n  cmd.run:\n    - name: echo creates >> ${log}; touch ${out}/made\n    - creates: ${out}/made`,
        `onlyif-false:\n  cmd.run:\n    - name: echo onlyif-false >> ${log}\n    - onlyif: "false"`,
        `onlyif-true:\n  cmd.run:\n    - name: echo onlyif-true >> ${log}\n    - onlyif: test -d ${out}`,
        `unless-true:\n  cmd.run:\n    - name: echo unless-true >> ${log}\n    - unless: test -f ${out}/made`,
        `fails:\n  cmd.run:\n    - name: echo oops >&2; exit 3`,
      ].join("\n"),
    });
    const first = await apply(tree, ["c"]);
    expect(readFileSync(log, "utf8").split("\n").filter(Boolean)).toEqual(["plain", "creates", "onlyif-true"]);
    expect(byId(first, "plain")).toMatchObject({ result: true, changed: true, diff: { retcode: 0 } });
    expect(byId(first, "onlyif-false")).toMatchObject({ result: true, changed: false });
    expect(byId(first, "onlyif-false").comment).toMatch(/onlyif/);
    expect(byId(first, "unless-true")).toMatchObject({ result: true, changed: false });
    expect(byId(first, "fails")).toMatchObject({ result: false, changed: true, diff: { retcode: 3, stderr: "oops\n" } });
    expect(first.success).toBe(false);

    const second = await apply(tree, ["c"]);
    expect(byId(second, "creates")).toMatchObject({ result: true, changed: false });
    expect(byId(second, "creates").comment).toMatch(/exists \(creates\)/);
    expect(readFileSync(log, "utf8").split("\n").filter(Boolean)).toEqual(["plain", "creates", "onlyif-true", "plain", "onlyif-true"]);
  });
});

describe("requisites", () => {
  it("runs a state after what it requires, in every form", async () => {
    const out = tempDir();
    const log = join(out, "log");
    const step = (id: string, require: string) => `${id}:\n  cmd.run:\n    - name: echo ${id} >> ${log}\n${require}`;
    const tree = writeTree({
      "r.yaml": [
        step("third", "    - require:\n      - cmd: second\n"),
        step("second", "    - require:\n      - {cmd.run: first}\n"),
        step("first", "    - require:\n      - conf\n"),
        `conf:\n  file.managed:\n    - name: ${out}/conf\n    - contents: x\n`,
      ].join(""),
    });
    const result = await apply(tree, ["r"]);
    expect(result.success).toBe(true);
    expect(result.results.map((r) => r.id)).toEqual(["conf", "first", "second", "third"]);
    expect(readFileSync(log, "utf8")).toBe("first\nsecond\nthird\n");
  });

  it("does not run a state whose requisite failed", async () => {
    const out = tempDir();
    const tree = writeTree({
      "r.yaml": `broken:\n  cmd.run:\n    - name: exit 1\nafter:\n  file.managed:\n    - name: ${out}/after\n    - require:\n      - cmd: broken\nindependent:\n  file.managed:\n    - name: ${out}/independent\n`,
    });
    const result = await apply(tree, ["r"]);
    expect(result.success).toBe(false);
    expect(byId(result, "after")).toMatchObject({ result: false, changed: false, comment: "requisite failed: cmd.run broken" });
    expect(existsSync(join(out, "after"))).toBe(false);
    expect(existsSync(join(out, "independent"))).toBe(true);
  });

  it("refuses cycles and missing requisites before anything runs", async () => {
    const out = tempDir();
    const tree = writeTree({
      "cycle.yaml": `first:\n  file.managed:\n    - name: ${out}/first\nb:\n  file.managed:\n    - name: ${out}/b\n    - require: [c]\nc:\n  file.managed:\n    - name: ${out}/c\n    - require: [{file: b}]\n`,
      "missing.yaml": `first:\n  file.managed:\n    - name: ${out}/first\nb:\n  file.managed:\n    - name: ${out}/b\n    - require: [{pkg: nginx}]\n`,
    });
    const cycle = await apply(tree, ["cycle"]);
    expect(cycle).toMatchObject({ success: false, results: [] });
    expect(cycle.errors).toEqual(["requisite cycle: file.managed b → file.managed c → file.managed b"]);
    const missing = await apply(tree, ["missing"]);
    expect(missing).toMatchObject({ success: false, results: [] });
    expect(missing.errors[0]).toMatch(/requisite not found: pkg: nginx/);
    expect(existsSync(join(out, "first"))).toBe(false);
  });
});

describe("errors, test mode, cancel", () => {
  it("reports unknown parameters and modules as failed states", async () => {
    const out = tempDir();
    const tree = writeTree({
      "e.yaml": `typo:\n  file.managed:\n    - name: ${out}/typo\n    - contnets: x\nodd:\n  file.teleport:\n    - name: ${out}/odd\nfine:\n  file.managed:\n    - name: ${out}/fine\n`,
    });
    const result = await apply(tree, ["e"]);
    expect(result.success).toBe(false);
    expect(byId(result, "typo")).toMatchObject({ result: false, changed: false });
    expect(byId(result, "typo").comment).toMatch(/unknown parameter 'contnets' for file.managed/);
    expect(byId(result, "odd")).toMatchObject({ result: false, comment: "unknown module file.teleport" });
    expect(existsSync(join(out, "typo"))).toBe(false);
    expect(existsSync(join(out, "fine"))).toBe(true);
  });

  it("test mode changes nothing: null where a change would happen, true where none is needed", async () => {
    const out = tempDir();
    writeFileSync(join(out, "same"), "same");
    writeFileSync(join(out, "doomed"), "x");
    const tree = writeTree({
      "t.yaml": [
        `same:\n  file.managed:\n    - name: ${out}/same\n    - contents: same\n`,
        `new:\n  file.managed:\n    - name: ${out}/new\n    - contents: new\n`,
        `dir:\n  file.directory:\n    - name: ${out}/dir\n`,
        `doomed:\n  file.absent:\n    - name: ${out}/doomed\n`,
        `cmd:\n  cmd.run:\n    - name: touch ${out}/ran\n    - require: [new]\n`,
      ].join(""),
    });
    const dry = await apply(tree, ["t"], { test: true });
    expect(dry.success).toBe(true);
    expect(dry.results.map((r) => [r.id, r.result, r.changed])).toEqual([
      ["same", true, false],
      ["new", null, false],
      ["dir", null, false],
      ["doomed", null, false],
      ["cmd", null, false],
    ]);
    expect(byId(dry, "new").diff).toMatchObject({ created: true });
    expect(existsSync(join(out, "new"))).toBe(false);
    expect(existsSync(join(out, "dir"))).toBe(false);
    expect(existsSync(join(out, "doomed"))).toBe(true);
    expect(existsSync(join(out, "ran"))).toBe(false);

    const real = await apply(tree, ["t"]);
    expect(real.results.filter((r) => r.changed).map((r) => r.id)).toEqual(["new", "dir", "doomed", "cmd"]);
    const again = await apply(tree, ["t"], { test: true });
    expect(again.results.filter((r) => r.id !== "cmd").every((r) => r.result === true)).toBe(true);
  });

  it("cancel kills the running command's group and runs no further state", async () => {
    const out = tempDir();
    const pidFile = join(out, "pid");
    const tree = writeTree({
      "slow.yaml": `slow:\n  cmd.run:\n    - name: echo $$ > ${pidFile}; sleep 30 & wait\nnext:\n  file.managed:\n    - name: ${out}/next\n`,
    });
    const controller = new AbortController();
    const started = Date.now();
    const pending = apply(tree, ["slow"], { signal: controller.signal });
    for (let i = 0; i < 100 && !existsSync(pidFile); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    const pgid = Number(readFileSync(pidFile, "utf8"));
    expect(groupMembers(pgid).length).toBeGreaterThan(0);
    controller.abort();
    const result = await pending;
    expect(Date.now() - started).toBeLessThan(4000);
    expect(result).toMatchObject({ success: false, aborted: "execution canceled" });
    expect(byId(result, "slow")).toMatchObject({ result: false, comment: "command did not finish: execution canceled" });
    expect(byId(result, "next")).toMatchObject({ result: false, changed: false, comment: "not run: execution canceled" });
    expect(existsSync(join(out, "next"))).toBe(false);
    // The whole group got SIGTERM, the backgrounded sleep too (zombies left unreaped by this container's init do not count).
    for (let i = 0; i < 50 && groupMembers(pgid).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(groupMembers(pgid)).toEqual([]);
  });
});

describe("pkg and service through the command runner", () => {
  const pkgTree = () => writeTree({ "p.yaml": `web:\n  pkg.installed:\n    - pkgs: [nginx, curl]\nold:\n  pkg.removed:\n    - name: telnet\n` });

  it("apt: dpkg-query finds what is missing, apt-get installs it, then nothing to do", async () => {
    const host = fakeHost({ programs: ["dpkg-query", "apt-get"], installed: ["curl", "telnet"] });
    const tree = pkgTree();
    const result = await apply(tree, ["p"], { runCommand: host.runner });
    expect(result.success).toBe(true);
    expect(byId(result, "web")).toMatchObject({ changed: true, diff: { installed: ["nginx"], manager: "apt" } });
    expect(byId(result, "old")).toMatchObject({ changed: true, diff: { removed: ["telnet"] } });
    expect(host.calls).toContain("env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx");
    expect(host.calls).toContain("env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q telnet");
    expect(host.calls.filter((call) => call === "dpkg-query --version")).toHaveLength(1);
    expect(host.calls.some((call) => call.startsWith("rpm") || call.startsWith("dnf"))).toBe(false);
    expect([...host.installed].sort()).toEqual(["curl", "nginx"]);

    host.calls.length = 0;
    const again = await apply(tree, ["p"], { runCommand: host.runner });
    expect(again.results.every((r) => r.result === true && !r.changed)).toBe(true);
    expect(host.calls.some((call) => call.includes("apt-get"))).toBe(false);
  });

  it("dnf: rpm -q finds what is missing and dnf installs it; test mode only queries", async () => {
    const host = fakeHost({ programs: ["rpm", "dnf"], installed: [] });
    const tree = pkgTree();
    const dry = await apply(tree, ["p"], { runCommand: host.runner, test: true });
    expect(byId(dry, "web")).toMatchObject({ result: null, diff: { installed: ["nginx", "curl"], manager: "dnf" } });
    expect(host.calls.some((call) => call.startsWith("dnf"))).toBe(false);

    const result = await apply(tree, ["p"], { runCommand: host.runner });
    expect(result.success).toBe(true);
    expect(host.calls).toContain("rpm -q nginx");
    expect(host.calls).toContain("dnf install -y nginx curl");
    expect(byId(result, "old")).toMatchObject({ result: true, changed: false });
  });

  it("says so when neither apt nor dnf is there", async () => {
    const host = fakeHost({ programs: [] });
    const result = await apply(pkgTree(), ["p"], { runCommand: host.runner });
    expect(byId(result, "web")).toMatchObject({ result: false, changed: false });
    expect(byId(result, "web").comment).toMatch(/no supported package manager: neither apt \(dpkg-query\) nor dnf \(rpm\)/);
  });

  it("service.running starts an inactive service (and enables it), and is a no-op when active", async () => {
    const host = fakeHost({ programs: ["systemctl"], active: ["sshd"] });
    const tree = writeTree({
      "s.yaml": `nginx:\n  service.running:\n    - enable: true\nsshd:\n  service.running: []\ntelnetd:\n  service.dead: []\n`,
    });
    const result = await apply(tree, ["s"], { runCommand: host.runner });
    expect(result.success).toBe(true);
    expect(byId(result, "nginx")).toMatchObject({ changed: true, diff: { service: { old: "dead", new: "running" }, enabled: { old: false, new: true } } });
    expect(byId(result, "sshd")).toMatchObject({ result: true, changed: false });
    expect(byId(result, "telnetd")).toMatchObject({ result: true, changed: false });
    expect(host.calls).toEqual([
      "systemctl is-active --quiet nginx",
      "systemctl is-enabled --quiet nginx",
      "systemctl start nginx",
      "systemctl enable nginx",
      "systemctl is-active --quiet sshd",
      "systemctl is-active --quiet telnetd",
    ]);
    host.calls.length = 0;
    const again = await apply(tree, ["s"], { runCommand: host.runner });
    expect(again.results.every((r) => !r.changed)).toBe(true);
    expect(host.calls.filter((call) => /start|stop|enable nginx$/.test(call) && !call.includes("is-"))).toEqual([]);
  });
});

describe("the state.apply job function", () => {
  it("reads names from states=/name=/_ and returns an outcome; test=true is a dry run", async () => {
    expect(stateNames({ _: ["a,b"] })).toEqual(["a", "b"]);
    expect(stateNames({ states: ["a", "c"] })).toEqual(["a", "c"]);
    expect(stateNames({ name: "x" })).toEqual(["x"]);
    expect(stateNames({})).toBeNull();

    const out = tempDir();
    const tree = writeTree({ "top.yaml": `web1: [m]\n`, "m.yaml": `m:\n  file.managed:\n    - name: ${out}/m\n` });
    const [applyFn] = stateFunctions({ tree: () => tree, node: () => NODE });
    const context = { jid: "1", signal: new AbortController().signal, facts: () => { throw new Error("unused"); }, settings: () => null, functions: () => [], killGraceMs: 200, test: false };
    const dry = await applyFn?.run({ test: true }, context);
    expect(dry).toBeInstanceOf(FunctionOutcome);
    expect(existsSync(join(out, "m"))).toBe(false);
    // The dispatch's own test flag (zectre run --test) also makes it a real dry run, with per-state results.
    const dispatchDry = (await applyFn?.run({}, { ...context, test: true })) as FunctionOutcome;
    expect(dispatchDry).toMatchObject({ success: true, result: { test: true, results: [{ id: "m", result: null }] } });
    expect(existsSync(join(out, "m"))).toBe(false);
    const real = (await applyFn?.run({}, context)) as FunctionOutcome;
    expect(real).toMatchObject({ success: true, retcode: 0, error: null });
    expect(existsSync(join(out, "m"))).toBe(true);
    const bad = (await applyFn?.run({ _: ["nope"] }, context)) as FunctionOutcome;
    expect(bad).toMatchObject({ success: false, retcode: 1 });
    expect(bad.error).toMatch(/state 'nope' not found/);
  });
});
