import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_STATE_FILES, MAX_STATE_TREE_BYTES } from "../../protocol/states.ts";
import { STATES_UPDATED_AT } from "./helpers/fake-api.ts";
import { expectOneErrorLine, lines, useTempDirs } from "./helpers/run-cli.ts";
import { useFakeApiCli } from "./helpers/fake-api-cli.ts";

/** `zectre state push|show`: the main paths through the real binary, limits in-process. */

const tempDir = useTempDirs();
const { api, zectre, quick } = useFakeApiCli();
const statesRequests = () => api.requests.filter((r) => r.path === "/api/v1/states");

function writeTree(files: Record<string, string>): string {
  const dir = join(tempDir(), "states");
  mkdirSync(dir, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const TREE = {
  "top.yaml": `"*": [base]\n"web*": [web.nginx]\n`,
  "base.yaml": "motd:\n  file.managed:\n    - name: /etc/motd\n    - contents: hi\n",
  "web/nginx.yml": "nginx:\n  pkg.installed: []\n",
  // Skipped: dotfiles, dot-directories, files that are not YAML.
  ".hidden.yaml": "x: 1\n",
  ".git/config.yaml": "x: 1\n",
  "README.md": "# states\n",
};

describe("zectre state push", () => {
  it("sends every YAML file of the tree, subdirectories included, and prints the version", async () => {
    const dir = writeTree(TREE);
    const result = await zectre("state", "push", dir);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const sent = statesRequests();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.method).toBe("PUT");
    expect(sent[0]?.body).toEqual({ files: { "base.yaml": TREE["base.yaml"], "top.yaml": TREE["top.yaml"], "web/nginx.yml": TREE["web/nginx.yml"] } });
    const tree = api.stateTree;
    const bytes = TREE["top.yaml"].length + TREE["base.yaml"].length + TREE["web/nginx.yml"].length;
    expect(result.stdout).toBe(`Pushed state tree ${tree?.version} (3 files, ${bytes} bytes); agents receive it through their outbox.\n`);

    const json = await zectre("state", "push", dir, "--format", "json");
    expect(JSON.parse(json.stdout)).toEqual({ version: tree?.version, files: ["base.yaml", "top.yaml", "web/nginx.yml"], bytes, updatedAt: STATES_UPDATED_AT, updatedBy: expect.stringMatching(/^token:/) });
  });

  it("refuses a file that is not valid YAML with one line naming it, and sends nothing", async () => {
    const dir = writeTree({ "top.yaml": `"*": [base]\n`, "web/broken.yaml": "key: [unclosed\nother: 1\n" });
    const result = await zectre("state", "push", dir);
    expectOneErrorLine(result, /^zectre: error: state file 'web\/broken\.yaml' is not valid YAML: .+\n$/);
    expect(statesRequests()).toHaveLength(0);
  });

  it("--dry-run validates and lists the files, sends nothing; a missing top.yaml is a warning", async () => {
    const dir = writeTree({ "base.yaml": "a: 1\n", "web/init.yaml": "b: 2\n" });
    const result = await zectre("state", "push", dir, "--dry-run");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`Would push 2 files (10 bytes) from ${dir}; nothing was sent:\n  base.yaml\n  web/init.yaml\n`);
    expect(lines(result.stderr)).toEqual([`zectre: warning: ${dir} has no top.yaml: state.apply without state names will have nothing to apply`]);
    expect(statesRequests()).toHaveLength(0);

    const json = await quick("state", "push", dir, "--dry-run", "--format", "yaml");
    expect(json.stdout).toBe("dryRun: true\nfiles:\n  - base.yaml\n  - web/init.yaml\nbytes: 10\n");
    expect(statesRequests()).toHaveLength(0);
  });

  it("turns a 413 or 400 from the server into one error line", async () => {
    const dir = writeTree({ "top.yaml": `"*": [base]\n` });
    api.replyNext({ status: 413, body: { error: { code: "payload_too_large", message: "a state tree is at most 524288 bytes" } } });
    expectOneErrorLine(await zectre("state", "push", dir), /^zectre: error: a state tree is at most 524288 bytes \(payload_too_large\)\n$/);
    api.replyNext({ status: 400, body: { error: { code: "invalid_body", message: "state files are relative .yaml/.yml paths without '..'" } } });
    expectOneErrorLine(await quick("state", "push", dir), /^zectre: error: state files are relative .* \(invalid_body\)\n$/);
  });

  it("enforces the file count and size limits before sending", async () => {
    const many: Record<string, string> = { "top.yaml": "{}\n" };
    for (let i = 0; i < MAX_STATE_FILES; i++) many[`s/f${i}.yaml`] = "a: 1\n";
    expectOneErrorLine(await quick("state", "push", writeTree(many)), new RegExp(`holds ${MAX_STATE_FILES + 1} state files; a state tree has at most ${MAX_STATE_FILES}\\n$`));
    const big = { "top.yaml": "{}\n", "big.yaml": `a: "${"x".repeat(MAX_STATE_TREE_BYTES)}"\n` };
    expectOneErrorLine(await quick("state", "push", writeTree(big)), /bytes; a state tree is at most 524288 bytes \(512 KiB\)\n$/);
    expectOneErrorLine(await quick("state", "push", writeTree({ "notes.txt": "hi" })), /no \.yaml or \.yml files under /);
    expectOneErrorLine(await quick("state", "push", join(tempDir(), "missing")), /no such directory/);
    expectOneErrorLine(await quick("state", "push", writeTree({ "bad name.yaml": "a: 1\n" })), /state file 'bad name\.yaml' has an unusable name/);
    expect(statesRequests()).toHaveLength(0);
  });

  it("has help with examples", async () => {
    const result = await quick("state", "push", "--help");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("zectre state push DIR [--dry-run]");
    expect(result.stdout).toContain("zectre state push ./states --dry-run");
    expect((await quick("state", "--help")).stdout).toMatch(/show/);
  });
});

describe("zectre state show", () => {
  it("prints the version, who pushed it and when, and the file list", async () => {
    await zectre("state", "push", writeTree(TREE));
    const tree = api.stateTree;
    const result = await zectre("state", "show");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const out = lines(result.stdout);
    expect(out[0]).toMatch(new RegExp(`^Version: +${tree?.version}$`));
    expect(out[1]).toMatch(/^Updated: +2026-01-08 11:12Z$/);
    expect(out[2]).toMatch(/^By: +token:/);
    expect(out[3]).toMatch(/^Size: +3 files, \d+ bytes$/);
    expect(out.slice(4)).toEqual(["Files:", "  base.yaml", "  top.yaml", "  web/nginx.yml"]);

    const yaml = await quick("state", "show", "--format", "yaml");
    expect(yaml.stdout).toContain(`version: ${tree?.version}\nfiles:\n  - base.yaml\n`);
  });

  it("says so in one line when no tree was pushed", async () => {
    expectOneErrorLine(await zectre("state", "show"), /^zectre: error: no state tree has been pushed \(not_found\)\n$/);
  });
});
