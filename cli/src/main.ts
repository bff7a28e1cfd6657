import { GLOBAL_OPTIONS, listWords, parseCommandLine } from "./args.ts";
import { ApiClient, ApiError } from "./client.ts";
import type { CommandContext } from "./command.ts";
import { COMMAND_TABLE } from "./commands/index.ts";
import { ConfigStore, configDir, type Credentials, resolveCredentials } from "./config.ts";
import { CliError, oneLine, UsageError } from "./errors.ts";
import { renderHelp } from "./help.ts";
import { envValue, type Io } from "./io.ts";
import { colorEnabled, makeColors, Output } from "./output.ts";
import { buildRegistry, type Registry } from "./registry.ts";
import { cliVersion } from "./version.ts";

export function createRegistry(): Registry {
  return buildRegistry(COMMAND_TABLE, GLOBAL_OPTIONS, "The command line for Zectre, a control plane for fleets of hosts");
}

/**
 * Runs one command line and returns the exit code; never throws and never exits the process.
 * Tests may pass their own registry, e.g. with a command whose network-heavy step is faked.
 */
export async function main(argv: readonly string[], io: Io, registry?: Registry): Promise<number> {
  try {
    registry ??= createRegistry();
    const parsed = parseCommandLine(argv, registry);
    const out = await Output.create(io, parsed.globals.format, parsed.globals.noColor);

    if (parsed.kind === "version") {
      out.result({ version: cliVersion() }, () => `zectre ${cliVersion()}`);
      return 0;
    }
    if (parsed.kind === "help") {
      const node = parsed.node;
      // A bare group is a half-typed command: say so in one line rather than dumping help on a script.
      if (!parsed.explicit && node.path.length > 0) {
        throw new UsageError(`'zectre ${node.path.join(" ")}' needs a command: ${listWords([...node.children.keys()])}`, node.path);
      }
      io.stdout.write(renderHelp(node, registry, out.colors));
      return 0;
    }

    const store = new ConfigStore(configDir(io.env));
    let resolved: Credentials | undefined;
    const credentials = (): Credentials => {
      resolved ??= resolveCredentials({ flags: parsed.globals, env: io.env, cwd: io.cwd, store });
      return resolved;
    };
    const ctx: CommandContext = {
      options: parsed.options,
      args: parsed.args,
      globals: parsed.globals,
      io,
      out,
      config: store,
      registry,
      credentials,
      client: (given = credentials()) =>
        new ApiClient({ url: given.url, token: given.token, userAgent: `zectre-cli/${cliVersion()}`, ...(io.fetch ? { fetch: io.fetch } : {}) }),
    };
    const code = await parsed.command.run(ctx);
    return typeof code === "number" ? code : 0;
  } catch (error) {
    // Decided here rather than from the parsed flags, which may be what failed.
    const red = makeColors(colorEnabled(io.stderr, io.env, argv.includes("--no-color"))).red;
    io.stderr.write(`${red("zectre: error:")} ${describeError(error)}\n`);
    if (!(error instanceof CliError) && envValue(io.env, "ZECTRE_DEBUG") !== undefined && error instanceof Error) {
      io.stderr.write(`${error.stack ?? ""}\n`);
    }
    return 1;
  }
}

/** Exactly one line for any failure: people read the first line, scripts grep it. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  if (error instanceof UsageError) {
    return `${oneLine(error.message)}; see '${["zectre", ...error.commandPath, "--help"].join(" ")}'`;
  }
  if (error instanceof CliError) return oneLine(error.message);
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `internal error: ${oneLine(text)} (set ZECTRE_DEBUG=1 for a stack trace)`;
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    onInterrupt(handler) {
      process.once("SIGINT", handler);
      return () => void process.off("SIGINT", handler);
    },
  };
}
