import { describe, expect, it } from "vitest";
import { closest, GLOBAL_OPTIONS, type ParsedLine, parseCommandLine } from "../../cli/src/args.ts";
import { defineCommand, defineGroup, type Entry } from "../../cli/src/command.ts";
import { UsageError } from "../../cli/src/errors.ts";
import { createRegistry } from "../../cli/src/main.ts";
import { buildRegistry } from "../../cli/src/registry.ts";

const registry = createRegistry();
const parse = (...argv: string[]): ParsedLine => parseCommandLine(argv, registry);

function runLine(...argv: string[]) {
  const parsed = parse(...argv);
  if (parsed.kind !== "run") throw new Error(`expected a runnable line, got ${parsed.kind}`);
  return parsed;
}

function usageError(...argv: string[]): UsageError {
  try {
    parse(...argv);
  } catch (error) {
    if (error instanceof UsageError) return error;
    throw error;
  }
  throw new Error(`expected a usage error for: ${argv.join(" ")}`);
}

describe("command line parsing", () => {
  it("finds the command and its flags wherever the global flags are", () => {
    for (const argv of [
      ["--format", "json", "token", "list", "--all"],
      ["token", "--format=json", "list", "--all"],
      ["token", "list", "--all", "--format", "json"],
    ]) {
      const parsed = runLine(...argv);
      expect(parsed.command.path).toEqual(["token", "list"]);
      expect(parsed.globals.format).toBe("json");
      expect(parsed.options).toEqual({ all: true });
    }
  });

  it("never reads the value of a flag as a command word", () => {
    const parsed = runLine("--profile", "list", "--url", "http://x", "token", "list");
    expect(parsed.command.path).toEqual(["token", "list"]);
    expect(parsed.globals.profile).toBe("list");
    expect(parsed.globals.url).toBe("http://x");
  });

  it("defaults to text with no color flag, and reads every global flag", () => {
    expect(runLine("status").globals).toEqual({
      format: "text",
      url: undefined,
      token: undefined,
      profile: undefined,
      noColor: false,
      help: false,
      version: false,
    });
    const globals = runLine("status", "--no-color", "--token=zt_x", "--profile", "p", "--format", "yaml").globals;
    expect(globals).toMatchObject({ noColor: true, token: "zt_x", profile: "p", format: "yaml" });
  });

  it("parses typed command options and positionals", () => {
    const create = runLine("token", "create", "--name", "ci deploy", "--scope", "operate", "--ttl=30d");
    expect(create.options).toEqual({ name: "ci deploy", scope: "operate", ttl: "30d" });
    const revoke = runLine("token", "revoke", "0123456789abcdef");
    expect(revoke.args).toEqual({ id: "0123456789abcdef" });
  });

  it("collects a repeatable flag in order, and gives an empty list when it is absent", () => {
    const many = runLine("node", "token", "create", "--label", "env=prod", "--uses", "3", "--label=role=web");
    expect(many.options).toEqual({ uses: "3", ttl: undefined, "auto-approve": false, label: ["env=prod", "role=web"] });
    expect(runLine("node", "token", "create").options.label).toEqual([]);
    // A plain string flag given twice keeps the last value, as before.
    expect(runLine("node", "list", "-s", "pending", "--state", "active").options.state).toBe("active");
    expect(usageError("node", "token", "create", "--label").message).toBe("flag --label needs a value");
  });

  it("reads negative numbers as values, not flags", () => {
    expect(runLine("settings", "set", "offset", "-5").args).toEqual({ key: "offset", value: "-5" });
    expect(runLine("settings", "set", "--node", "web-1", "ratio", "-0.5").args).toEqual({ key: "ratio", value: "-0.5" });
    expect(usageError("settings", "set", "k", "-x").message).toBe("unknown flag '-x'");
  });

  it("rejects a repeatable boolean in the command table", () => {
    const bad = defineCommand({ path: ["z"], summary: "s", options: { yes: { type: "boolean", multiple: true, description: "" } }, run: async () => {} });
    expect(() => buildRegistry([bad], GLOBAL_OPTIONS, "test")).toThrow(/only string options may repeat \(--yes\)/);
  });

  it("takes everything after -- as positionals", () => {
    expect(runLine("token", "revoke", "--", "-odd-id").args).toEqual({ id: "-odd-id" });
    expect(runLine("help", "token", "create").args).toEqual({ command: ["token", "create"] });
  });

  it("rejects unknown flags, with a suggestion for near misses", () => {
    const error = usageError("token", "list", "--al");
    expect(error.message).toBe("unknown flag '--al' (did you mean '--all'?)");
    expect(error.commandPath).toEqual(["token", "list"]);
    expect(usageError("status", "-x").message).toBe("unknown flag '-x'");
    // Command flags belong after the command they configure.
    expect(usageError("status", "--all").message).toMatch(/^unknown flag '--all'/);
  });

  it("rejects a bad --format, and other bad values", () => {
    expect(usageError("--format", "xml", "status").message).toBe("invalid --format 'xml': expected text, json or yaml");
    expect(usageError("token", "create", "--name", "n", "--scope", "root").message).toBe(
      "invalid --scope 'root': expected read, operate or admin",
    );
    expect(usageError("token", "list", "--all=yes").message).toBe("flag --all does not take a value");
    expect(usageError("status", "--url").message).toBe("flag --url needs a value");
    expect(usageError("status", "--token", "--format", "json").message).toMatch(/^flag --token needs a value/);
  });

  it("checks required flags and the number of arguments", () => {
    expect(usageError("token", "create", "--name", "n").message).toBe("missing required flag --scope");
    expect(usageError("token", "revoke").message).toBe("missing argument ID");
    expect(usageError("token", "revoke", "a", "b").message).toBe("unexpected argument 'b'");
    expect(usageError("status", "now").message).toBe("unexpected argument 'now'");
  });

  it("rejects unknown commands at every level", () => {
    expect(usageError("frobnicate").message).toBe("unknown command 'frobnicate'");
    expect(usageError("tokne").message).toBe("unknown command 'tokne' (did you mean 'token'?)");
    const nested = usageError("token", "lst");
    expect(nested.message).toBe("unknown command 'token lst' (did you mean 'token list'?)");
    expect(nested.commandPath).toEqual(["token"]);
  });

  it("reads 'TARGET FUNCTION ...' as run when the first word is no command and the second is module.function", () => {
    for (const argv of [
      ["web*", "cmd.run", "ls -la", "--async"],
      ["--format", "json", "web*", "cmd.run", "ls -la", "--async"],
      ["--async", "web*", "--timeout", "30", "cmd.run", "ls -la"],
      ["run", "web*", "cmd.run", "ls -la", "--async"],
    ]) {
      const parsed = runLine(...argv);
      expect(parsed.command.path, argv.join(" ")).toEqual(["run"]);
      expect(parsed.args, argv.join(" ")).toEqual({ target: "web*", function: "cmd.run", args: ["ls -la"] });
      expect(parsed.options.async).toBe(true);
    }
    expect(runLine("-L", "a,b", "test.ping", "--", "-x").args).toEqual({ target: "a,b", function: "test.ping", args: ["-x"] });
    const help = parse("*", "test.ping", "--help");
    expect(help.kind === "help" && help.node.path).toEqual(["run"]);
    // A bad flag is reported against run, whose help lists the flags.
    const bad = usageError("web*", "test.ping", "--asink");
    expect(bad.message).toBe("unknown flag '--asink' (did you mean '--async'?)");
    expect(bad.commandPath).toEqual(["run"]);
    // Without a module.function second word, or under a group, it is still an unknown command.
    expect(usageError("web-1", "ping").message).toBe("unknown command 'web-1'");
    expect(usageError("tokne").message).toBe("unknown command 'tokne' (did you mean 'token'?)");
    expect(usageError("token", "test.ping").message).toBe("unknown command 'token test.ping'");
  });

  it("turns --help into a request for that node's help, skipping validation", () => {
    const group = parse("token", "--help");
    expect(group).toMatchObject({ kind: "help", explicit: true });
    if (group.kind === "help") expect(group.node.path).toEqual(["token"]);
    const command = parse("token", "create", "-h");
    expect(command.kind).toBe("help");
    if (command.kind === "help") expect(command.node.command?.path).toEqual(["token", "create"]);
    // A bare group is not an explicit request; main turns it into a usage error.
    expect(parse("token")).toMatchObject({ kind: "help", explicit: false });
    expect(parse("--version", "status").kind).toBe("version");
  });
});

describe("command table", () => {
  const noop = async () => {};
  const build = (entries: Entry[]) => buildRegistry(entries, GLOBAL_OPTIONS, "test");

  it("lists groups and commands in declaration order", () => {
    expect([...registry.root.children.keys()]).toEqual(["login", "logout", "status", "run", "job", "token", "node", "settings", "state", "deploy", "app", "deployments", "promote", "rollback", "scale", "env", "route", "logs", "artifact", "webhook", "events", "audit", "help"]);
    expect([...(registry.find(["job"])?.children.keys() ?? [])]).toEqual(["list", "active", "show", "kill", "watch"]);
    expect([...(registry.find(["token"])?.children.keys() ?? [])]).toEqual(["create", "list", "revoke"]);
    expect([...(registry.find(["node"])?.children.keys() ?? [])]).toEqual(["list", "show", "facts", "label", "direct", "enroll", "token"]);
    expect([...(registry.find(["node", "enroll"])?.children.keys() ?? [])]).toEqual(["list", "approve", "reject", "revoke"]);
    expect([...(registry.find(["settings"])?.children.keys() ?? [])]).toEqual(["set", "get", "list", "unset"]);
    expect([...(registry.find(["state"])?.children.keys() ?? [])]).toEqual(["push", "show"]);
  });

  it("accepts a new group declared in one list of entries", () => {
    const table = build([
      defineGroup({ path: ["node"], summary: "Hosts" }),
      defineCommand({ path: ["node", "list"], summary: "List hosts", run: noop }),
    ]);
    expect(table.find(["node", "list"])?.command?.summary).toBe("List hosts");
  });

  it("rejects inconsistent tables", () => {
    const list = defineCommand({ path: ["node", "list"], summary: "s", run: noop });
    expect(() => build([list])).toThrow(/needs a group 'node' declared first/);
    const group = defineGroup({ path: ["node"], summary: "s" });
    expect(() => build([group, list, list])).toThrow(/declared twice/);
    expect(() => build([group])).toThrow(/has no commands/);
    const shadow = defineCommand({ path: ["x"], summary: "s", options: { format: { type: "string", description: "" } }, run: noop });
    expect(() => build([shadow])).toThrow(/redefines the global option --format/);
    const short = defineCommand({ path: ["y"], summary: "s", options: { hold: { type: "boolean", short: "h", description: "" } }, run: noop });
    expect(() => build([short])).toThrow(/reuses the short option -h/);
  });

  it("suggests only close candidates", () => {
    expect(closest("stauts", ["status", "token"])).toBe("status");
    expect(closest("tok", ["status", "token"])).toBe("token");
    expect(closest("deploy", ["status", "token"])).toBeUndefined();
  });
});
