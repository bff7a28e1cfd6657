import { beforeEach, describe, expect, it } from "vitest";
import { parseSettingValue } from "../../cli/src/commands/settings.ts";
import type { SettingRecord } from "../../protocol/nodes.ts";
import { SETTING_UPDATED_AT } from "./helpers/fake-api.ts";
import { expectOk, expectOneErrorLine, lines } from "./helpers/run-cli.ts";
import { useFakeApiCli } from "./helpers/fake-api-cli.ts";

/**
 * `zectre settings ...`: the main paths through the real binary, the variations
 * through `main` in-process (the same code without Node's startup per case).
 */

const { api, zectre, quick } = useFakeApiCli();

const cells = (row: string | undefined) => (row ?? "").split(/\s{2,}/);
const bodyOf = (key: string) => api.requests.find((r) => r.method === "PUT" && (r.body as { key?: string } | undefined)?.key === key)?.body;

/** org log.level=debug; env=prod nodes get max-jobs 4 and limits; web-1 itself max-jobs 8. */
function seed(): void {
  const record = (scope: SettingRecord["scope"], key: string, value: SettingRecord["value"]): SettingRecord => ({
    scope,
    key,
    value,
    updatedAt: SETTING_UPDATED_AT,
    updatedBy: "operator",
  });
  api.settings.push(
    record({ kind: "org" }, "log.level", "debug"),
    record({ kind: "label", key: "env", value: "prod" }, "max-jobs", 4),
    record({ kind: "node", nodeId: "web-1" }, "max-jobs", 8),
    record({ kind: "label", key: "env", value: "prod" }, "limits", { cpu: 2 }),
  );
}

describe("settings values", () => {
  it("reads VALUE as JSON when it is JSON, else as a string", () => {
    expect(parseSettingValue("42")).toBe(42);
    expect(parseSettingValue("-1.5")).toBe(-1.5);
    expect(parseSettingValue("true")).toBe(true);
    expect(parseSettingValue("null")).toBe(null);
    expect(parseSettingValue('{"a":1}')).toEqual({ a: 1 });
    expect(parseSettingValue('"42"')).toBe("42");
    expect(parseSettingValue("debug")).toBe("debug");
    expect(parseSettingValue("{a:1}")).toBe("{a:1}");
    expect(parseSettingValue("")).toBe("");
  });
});

describe("zectre settings set", () => {
  it("puts org, label and node settings with JSON or string values", async () => {
    expect(expectOk(await zectre("settings", "set", "log.level", "debug"))).toBe("Set log.level = debug for the org.\n");
    expect(api.requests.at(-1)).toMatchObject({ method: "PUT", path: "/api/v1/settings" });
    expect(bodyOf("log.level")).toEqual({ scope: { kind: "org" }, key: "log.level", value: "debug" });

    const [label, node, flag, negative, quoted] = await Promise.all([
      quick("settings", "set", "max-jobs", "42", "--label", "env=prod"),
      quick("settings", "set", "limits", '{"cpu":2,"tags":["a"]}', "--node", "web-1"),
      quick("settings", "set", "enabled", "true"),
      quick("settings", "set", "offset", "-5"),
      quick("settings", "set", "code", '"007"', "--format", "json"),
    ]);
    expect(expectOk(label)).toBe("Set max-jobs = 42 for nodes labeled env=prod.\n");
    expect(bodyOf("max-jobs")).toEqual({ scope: { kind: "label", key: "env", value: "prod" }, key: "max-jobs", value: 42 });
    expect(expectOk(node)).toBe(`Set limits = {"cpu":2,"tags":["a"]} for node 'web-1'.\n`);
    expect(bodyOf("limits")).toEqual({ scope: { kind: "node", nodeId: "web-1" }, key: "limits", value: { cpu: 2, tags: ["a"] } });
    expect(expectOk(flag)).toBe("Set enabled = true for the org.\n");
    expect(bodyOf("enabled")).toMatchObject({ value: true });
    expect(expectOk(negative)).toBe("Set offset = -5 for the org.\n");
    expect(bodyOf("offset")).toMatchObject({ value: -5 });
    expect(JSON.parse(expectOk(quoted))).toEqual({ setting: { scope: { kind: "org" }, key: "code", value: "007", updatedAt: SETTING_UPDATED_AT, updatedBy: expect.stringMatching(/^token:/) } });
    expect(api.settings).toHaveLength(6);
  });

  it("refuses both scopes, bad keys and bad labels before any request", async () => {
    const both = await zectre("settings", "set", "k", "1", "--label", "env=prod", "--node", "web-1");
    expectOneErrorLine(both, "zectre: error: --label and --node cannot be used together: a setting has one scope; see 'zectre settings set --help'");
    const [key, noEquals, twoEquals, node, missing, listBoth, getBoth] = await Promise.all([
      quick("settings", "set", "bad key", "1"),
      quick("settings", "set", "k", "1", "--label", "env"),
      quick("settings", "unset", "k", "--label", "k=v="),
      quick("settings", "get", "k", "--node", "web.1"),
      quick("settings", "set", "k"),
      quick("settings", "list", "--node", "web-1", "--label", "a=b"),
      quick("settings", "get", "k", "--label", "a=b", "--node", "web-1"),
    ]);
    expectOneErrorLine(key, "zectre: error: invalid setting key 'bad key': setting keys use letters, digits and . _ - (max 128); see 'zectre settings set --help'");
    expectOneErrorLine(noEquals, "zectre: error: invalid --label 'env': write KEY=VALUE with a single '='; see 'zectre settings set --help'");
    expectOneErrorLine(twoEquals, "zectre: error: invalid --label 'k=v=': write KEY=VALUE with a single '='; see 'zectre settings unset --help'");
    expectOneErrorLine(
      node,
      "zectre: error: invalid node id 'web.1': node ids start with a letter or digit and use only letters, digits, '_' and '-'; see 'zectre settings get --help'",
    );
    expectOneErrorLine(missing, "zectre: error: missing argument VALUE; see 'zectre settings set --help'");
    expect(listBoth.stderr).toMatch(/^zectre: error: --label and --node cannot be used together.*'zectre settings list --help'\n$/);
    expect(getBoth.stderr).toMatch(/^zectre: error: --label and --node cannot be used together.*'zectre settings get --help'\n$/);
    expect(api.requests).toEqual([]);
  });
});

describe("zectre settings list and get", () => {
  beforeEach(seed);

  it("lists every scope's settings with the documented columns, or one scope's", async () => {
    const all = lines(expectOk(await zectre("settings", "list")));
    expect(api.requests.at(-1)).toMatchObject({ method: "GET", path: "/api/v1/settings" });
    expect([...(api.requests.at(-1)?.query.keys() ?? [])]).toEqual([]);
    expect(all[0]).toMatch(/^SCOPE\s+KEY\s+VALUE\s+UPDATED$/);
    expect(all.slice(1).map(cells)).toEqual([
      ["org", "log.level", '"debug"', "2026-01-06 12:00Z"],
      ["label:env=prod", "max-jobs", "4", "2026-01-06 12:00Z"],
      ["node:web-1", "max-jobs", "8", "2026-01-06 12:00Z"],
      ["label:env=prod", "limits", '{"cpu":2}', "2026-01-06 12:00Z"],
    ]);

    const [label, json, empty] = await Promise.all([
      quick("settings", "list", "--label", "env=prod"),
      quick("settings", "list", "--format", "json"),
      quick("settings", "list", "--label", "env=dev"),
    ]);
    expect(lines(expectOk(label)).slice(1).map((row) => cells(row).slice(0, 2))).toEqual([
      ["label:env=prod", "max-jobs"],
      ["label:env=prod", "limits"],
    ]);
    expect(api.requests.filter((r) => r.query.has("scope")).map((r) => r.query.get("scope"))).toEqual(["label:env=prod", "label:env=dev"]);
    expect(JSON.parse(expectOk(json))).toEqual({ settings: api.settings });
    expect(expectOk(empty)).toBe("No settings for nodes labeled env=dev.\n");
  });

  it("lists a node's merged settings with a SOURCE column", async () => {
    const merged = lines(expectOk(await quick("settings", "list", "--node", "web-1")));
    expect(api.requests.at(-1)).toMatchObject({ method: "GET", path: "/api/v1/nodes/web-1/settings" });
    expect(merged).toEqual([
      "KEY        VALUE      SOURCE",
      'limits     {"cpu":2}  label:env=prod',
      'log.level  "debug"    org',
      "max-jobs   8          node",
    ]);
    const json = JSON.parse(expectOk(await quick("settings", "list", "--node", "web-2", "--format", "json"))) as unknown;
    expect(json).toEqual({
      settings: { "log.level": "debug", "max-jobs": 4, limits: { cpu: 2 } },
      sources: { "log.level": "org", "max-jobs": "label:env=prod", limits: "label:env=prod" },
    });
  });

  it("gets a value at a scope, or a node's effective value and its source", async () => {
    expect(expectOk(await zectre("settings", "get", "log.level"))).toBe("debug\n");
    expect(api.requests.at(-1)?.query.get("scope")).toBe("org");

    const [label, object, node, nodeJson, missing, notApplied] = await Promise.all([
      quick("settings", "get", "max-jobs", "--label", "env=prod"),
      quick("settings", "get", "limits", "--label", "env=prod"),
      quick("settings", "get", "max-jobs", "--node", "web-1"),
      quick("settings", "get", "limits", "--node", "web-2", "--format", "json"),
      quick("settings", "get", "limits"),
      quick("settings", "get", "limits", "--node", "db-1"),
    ]);
    expect(expectOk(label)).toBe("4\n");
    expect(expectOk(object)).toBe('{\n  "cpu": 2\n}\n');
    expect(lines(expectOk(node))).toEqual(["Value:   8", "Source:  node"]);
    expect(JSON.parse(expectOk(nodeJson))).toEqual({ nodeId: "web-2", key: "limits", value: { cpu: 2 }, source: "label:env=prod" });
    expectOneErrorLine(missing, "zectre: error: setting 'limits' is not set for the org");
    expectOneErrorLine(notApplied, "zectre: error: setting 'limits' does not apply to node 'db-1' at any scope");
  });
});

describe("zectre settings unset", () => {
  beforeEach(seed);

  it("deletes with the scope and key in the body, and relays the server's 404", async () => {
    expect(expectOk(await zectre("settings", "unset", "max-jobs", "--node", "web-1"))).toBe("Unset max-jobs for node 'web-1' (it was 8).\n");
    expect(api.requests.at(-1)).toMatchObject({
      method: "DELETE",
      path: "/api/v1/settings",
      body: { scope: { kind: "node", nodeId: "web-1" }, key: "max-jobs" },
    });
    expect(api.requests.at(-1)?.headers["content-type"]).toBe("application/json");
    expect(api.settings.map((s) => s.key)).toEqual(["log.level", "max-jobs", "limits"]);

    const [again, json] = await Promise.all([
      quick("settings", "unset", "max-jobs", "--node", "web-1"),
      quick("settings", "unset", "limits", "--label", "env=prod", "--format", "json"),
    ]);
    expectOneErrorLine(again, "zectre: error: setting 'max-jobs' is not set at scope node:web-1 (not_found)");
    expect(JSON.parse(expectOk(json))).toMatchObject({ deleted: { key: "limits", value: { cpu: 2 }, scope: { kind: "label", key: "env", value: "prod" } } });
  });
});
