import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { gunzipStream, readTarEntries } from "../../lib/tar.ts";
import { IgnoreMatcher, parseIgnore } from "../../cli/src/pack/ignore.ts";
import { findDeps, packApp, type PackedLayer } from "../../cli/src/pack/pack.ts";

const temps: string[] = [];
const layers: PackedLayer[] = [];
afterEach(async () => {
  for (const layer of layers.splice(0)) await layer.dispose();
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "zectre-pack-test-"));
  temps.push(dir);
  return dir;
}

/** Writes files (a trailing `/` makes a directory), creating parents. */
function tree(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    if (path.endsWith("/")) mkdirSync(join(root, path), { recursive: true });
    else {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), content);
    }
  }
}

// ---- the matcher, table-driven ----

interface Row {
  rules: string;
  path: string;
  dir?: boolean;
  ignored: boolean;
}

const TABLE: Row[] = [
  { rules: "# a comment\n\n*.log", path: "debug.log", ignored: true },
  { rules: "# a comment\n\n*.log", path: "# a comment", ignored: false },
  { rules: "*.log", path: "a/b/debug.log", ignored: true },
  { rules: "*.log", path: "debug.LOG", ignored: false },
  { rules: "*.log\n!keep.log", path: "keep.log", ignored: false },
  { rules: "*.log\n!keep.log", path: "drop.log", ignored: true },
  { rules: "!keep.log\n*.log", path: "keep.log", ignored: true },
  { rules: "build/", path: "build", dir: true, ignored: true },
  { rules: "build/", path: "build", ignored: false },
  { rules: "build/", path: "src/build", dir: true, ignored: true },
  { rules: "foo", path: "x/foo", dir: true, ignored: true },
  { rules: "/root.txt", path: "root.txt", ignored: true },
  { rules: "/root.txt", path: "sub/root.txt", ignored: false },
  { rules: "doc/*.txt", path: "doc/a.txt", ignored: true },
  { rules: "doc/*.txt", path: "doc/sub/a.txt", ignored: false },
  { rules: "doc/*.txt", path: "x/doc/a.txt", ignored: false },
  { rules: "**/logs", path: "logs", dir: true, ignored: true },
  { rules: "**/logs", path: "a/b/logs", dir: true, ignored: true },
  { rules: "**/logs/debug.log", path: "logs/debug.log", ignored: true },
  { rules: "**/logs/debug.log", path: "x/y/logs/debug.log", ignored: true },
  { rules: "abc/**", path: "abc/x", ignored: true },
  { rules: "abc/**", path: "abc/x/y", ignored: true },
  { rules: "abc/**", path: "abc", dir: true, ignored: false },
  { rules: "a/**/b", path: "a/b", ignored: true },
  { rules: "a/**/b", path: "a/x/y/b", ignored: true },
  { rules: "a/**/b", path: "a/xb", ignored: false },
  { rules: "file?.txt", path: "file1.txt", ignored: true },
  { rules: "file?.txt", path: "file10.txt", ignored: false },
  { rules: "a?b", path: "a/b", ignored: false },
  { rules: "[abc].txt", path: "b.txt", ignored: true },
  { rules: "[abc].txt", path: "d.txt", ignored: false },
  { rules: "[!abc].txt", path: "d.txt", ignored: true },
  { rules: "[!abc].txt", path: "a.txt", ignored: false },
  { rules: "x[a-c]", path: "xb", ignored: true },
  { rules: "x[a-c]", path: "xd", ignored: false },
  { rules: "\\#hash", path: "#hash", ignored: true },
  { rules: "\\!bang", path: "!bang", ignored: true },
  { rules: "trailing   ", path: "trailing", ignored: true },
  { rules: "*\n!*.js", path: "a.js", ignored: false },
  { rules: "*\n!*.js", path: "a.txt", ignored: true },
  { rules: "*.tmp", path: "x.tmp.keep", ignored: false },
];

describe("ignore rules", () => {
  it.each(TABLE)("'$rules' on $path (dir: $dir) → ignored: $ignored", ({ rules, path, dir, ignored }) => {
    const matcher = new IgnoreMatcher([{ base: "", rules: parseIgnore(rules) }]);
    expect(matcher.ignores(path, dir === true)).toBe(ignored);
  });

  it("agrees with git check-ignore on every row of the table", () => {
    const disagreements: string[] = [];
    for (const row of TABLE) {
      const repo = tempDir();
      execFileSync("git", ["init", "-q", repo]);
      writeFileSync(join(repo, ".gitignore"), `${row.rules}\n`);
      tree(repo, { [row.dir ? `${row.path}/` : row.path]: "x" });
      // Without a trailing slash: git sees the directory on disk (with one, check-ignore matches `abc/**` against `abc/` itself).
      const result = spawnSync("git", ["-C", repo, "check-ignore", "-q", row.path]);
      if ((result.status === 0) !== row.ignored) disagreements.push(JSON.stringify(row));
    }
    expect(disagreements).toEqual([]);
  });

  it("applies a nested .gitignore to its own subtree only, deeper rules winning", () => {
    const matcher = new IgnoreMatcher([{ base: "", rules: parseIgnore("*.tmp") }]).withNested({
      base: "sub",
      rules: parseIgnore("!keep.tmp\n/only-here"),
    });
    expect(matcher.ignores("keep.tmp", false)).toBe(true);
    expect(matcher.ignores("sub/keep.tmp", false)).toBe(false);
    expect(matcher.ignores("sub/other.tmp", false)).toBe(true);
    expect(matcher.ignores("sub/only-here", false)).toBe(true);
    expect(matcher.ignores("only-here", false)).toBe(false);
    expect(matcher.ignores("sub/deeper/only-here", false)).toBe(false);
  });

  it("puts .zectreignore on top, and never packs .git or .zectre", () => {
    const matcher = new IgnoreMatcher([{ base: "", rules: parseIgnore("dist/\n!secret.txt\n!.git") }], {
      base: "",
      rules: parseIgnore("!dist/\nsecret.txt"),
    });
    expect(matcher.ignores("dist", true)).toBe(false);
    expect(matcher.ignores("secret.txt", false)).toBe(true);
    expect(matcher.ignores(".git", true)).toBe(true);
    expect(matcher.ignores("vendor/lib/.git", true)).toBe(true);
    expect(matcher.ignores(".zectre", true)).toBe(true);
  });
});

// ---- packing ----

async function contents(layer: PackedLayer): Promise<Map<string, string>> {
  const entries = await readTarEntries(gunzipStream(createReadStream(layer.path)));
  return new Map(entries.map((e) => [e.header.path, e.header.type === "symlink" ? `-> ${e.header.linkTarget}` : new TextDecoder().decode(e.data)]));
}

async function pack(dir: string) {
  const packed = await packApp(dir);
  layers.push(packed.app);
  if (packed.deps) layers.push(packed.deps);
  return packed;
}

function sampleApp(): string {
  const dir = tempDir();
  tree(dir, {
    "server.js": "require('http').createServer().listen(process.env.PORT)\n",
    "lib/util.js": "module.exports = 1\n",
    "empty-dir/": "",
    "debug.log": "noise",
    "dist/bundle.js": "built",
    "sub/.gitignore": "!keep.log\n",
    "sub/keep.log": "kept",
    "sub/drop.tmp": "dropped",
    ".gitignore": "*.log\n*.tmp\nnode_modules/\ndist/\n",
    ".zectreignore": "!dist/\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    ".zectre/state/x": "local state",
    "package.json": '{"name":"app"}\n',
  });
  writeFileSync(join(dir, "run.sh"), "#!/bin/sh\n", { mode: 0o755 });
  symlinkSync("lib/util.js", join(dir, "util-link.js"));
  return dir;
}

describe("packApp", () => {
  it("packs what the ignore files keep, with modes, empty directories and symlinks", async () => {
    const dir = sampleApp();
    const { app, deps } = await pack(dir);
    expect(deps).toBeNull();
    const files = await contents(app);
    expect([...files.keys()].sort()).toEqual(
      [".gitignore", ".zectreignore", "dist", "dist/bundle.js", "empty-dir", "lib", "lib/util.js", "package.json", "run.sh", "server.js", "sub", "sub/.gitignore", "sub/keep.log", "util-link.js"].sort(),
    );
    expect(files.get("util-link.js")).toBe("-> lib/util.js");
    expect(app.files).toBe(10);
    const entries = await readTarEntries(gunzipStream(createReadStream(app.path)));
    const mode = (path: string) => entries.find((e) => e.header.path === path)?.header.mode;
    expect(mode("run.sh")).toBe(0o755);
    expect(mode("server.js")).toBe(0o644);
    expect(mode("lib")).toBe(0o755);
    expect(app.digest).toBe(createHash("sha256").update(readFileSync(app.path)).digest("hex"));
    expect(app.size).toBe(readFileSync(app.path).byteLength);
  });

  it("gives the same digest for the same content: packed twice, mtimes touched, files created in another order", async () => {
    const dir = sampleApp();
    const first = (await pack(dir)).app.digest;
    expect((await pack(dir)).app.digest).toBe(first);
    for (const path of ["server.js", "lib/util.js", "lib", "run.sh"]) utimesSync(join(dir, path), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect((await pack(dir)).app.digest).toBe(first);

    const copy = tempDir();
    execFileSync("cp", ["-a", `${dir}/.`, copy]);
    rmSync(join(copy, "lib"), { recursive: true });
    tree(copy, { "lib/util.js": "module.exports = 1\n" });
    expect((await pack(copy)).app.digest).toBe(first);

    writeFileSync(join(dir, "server.js"), "changed\n");
    expect((await pack(dir)).app.digest).not.toBe(first);
  });

  it("splits node_modules into a deps layer addressed by the lockfile, packed whatever .gitignore says", async () => {
    const dir = sampleApp();
    const lock = '{"lockfileVersion":3}\n';
    tree(dir, {
      "package-lock.json": lock,
      "node_modules/left-pad/index.js": "module.exports = (s) => s\n",
      "node_modules/left-pad/debug.log": "ignored by .gitignore, packed anyway",
      "node_modules/left-pad/.git/HEAD": "never packed",
      "node_modules/.bin/": "",
    });
    symlinkSync("../left-pad/index.js", join(dir, "node_modules/.bin/left-pad"));
    const { app, deps } = await pack(dir);
    if (!deps) throw new Error("expected a deps layer");
    expect(deps.lockfile).toBe(createHash("sha256").update(lock).digest("hex"));
    expect((await findDeps(dir))?.lockfileHash).toBe(deps.lockfile);

    const appFiles = await contents(app);
    expect([...appFiles.keys()].some((p) => p.startsWith("node_modules"))).toBe(false);
    expect(appFiles.has("package-lock.json")).toBe(true);
    const depFiles = await contents(deps);
    expect([...depFiles.keys()].sort()).toEqual(
      ["node_modules", "node_modules/.bin", "node_modules/.bin/left-pad", "node_modules/left-pad", "node_modules/left-pad/debug.log", "node_modules/left-pad/index.js"].sort(),
    );

    // New code, same dependencies: the deps layer is byte-for-byte the same.
    writeFileSync(join(dir, "server.js"), "v2\n");
    const again = await pack(dir);
    expect(again.deps?.digest).toBe(deps.digest);
    expect(again.app.digest).not.toBe(app.digest);
  });

  it("has no deps layer without a lockfile (node_modules then follows the ignore rules) or without node_modules", async () => {
    const noLock = tempDir();
    tree(noLock, { "index.js": "1", "node_modules/x/index.js": "x" });
    const packed = await pack(noLock);
    expect(packed.deps).toBeNull();
    expect([...(await contents(packed.app)).keys()]).toContain("node_modules/x/index.js");

    const noModules = tempDir();
    tree(noModules, { "index.js": "1", "yarn.lock": "# yarn\n" });
    expect((await pack(noModules)).deps).toBeNull();
    expect(await findDeps(noModules)).toBeNull();
  });

  it("hashes every lockfile present when there are several", async () => {
    const dir = tempDir();
    tree(dir, { "yarn.lock": "y", "package-lock.json": "p", "node_modules/a/index.js": "a" });
    const deps = await findDeps(dir);
    expect(deps?.lockfiles).toEqual(["package-lock.json", "yarn.lock"]);
    const sha = (text: string) => createHash("sha256").update(text).digest("hex");
    expect(deps?.lockfileHash).toBe(sha(`package-lock.json ${sha("p")}\nyarn.lock ${sha("y")}\n`));
  });

  it("refuses a symlink that leaves the app directory", async () => {
    const dir = tempDir();
    tree(dir, { "index.js": "1" });
    symlinkSync("/etc/passwd", join(dir, "passwd"));
    await expect(packApp(dir)).rejects.toThrow(/passwd is a symlink to '\/etc\/passwd', outside the app directory/);
    rmSync(join(dir, "passwd"));
    tree(dir, { "sub/": "" });
    symlinkSync("../../up", join(dir, "sub/up"));
    await expect(packApp(dir)).rejects.toThrow(/outside the app directory/);
  });

  it("reports read progress up to the total", async () => {
    const dir = tempDir();
    tree(dir, { "a.bin": "a".repeat(200_000), "b.txt": "b" });
    const events: Array<[number, number]> = [];
    const packed = await packApp(dir, { progress: (done, total) => events.push([done, total]) });
    layers.push(packed.app);
    expect(events[0]).toEqual([0, 200_001]);
    expect(events.at(-1)).toEqual([200_001, 200_001]);
  });
});
