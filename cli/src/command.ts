import type { ApiClient } from "./client.ts";
import type { ConfigStore, Credentials } from "./config.ts";
import type { Io } from "./io.ts";
import type { Format, Output } from "./output.ts";
import type { Registry } from "./registry.ts";

/**
 * The declarative command table. Each file in `commands/` exports a list of
 * groups and commands; `registry.ts` assembles them into a tree, and the parser,
 * help and dispatcher all read that tree, so a command is described exactly once.
 */

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly description: string;
  /** A single letter, used as `-x`. */
  readonly short?: string;
  /** Shown in usage lines, e.g. `--ttl DURATION`. */
  readonly valueName?: string;
  readonly required?: boolean;
  readonly choices?: readonly string[];
  /** String options only: the flag may repeat, and its value is every occurrence in order (empty when absent). */
  readonly multiple?: boolean;
}

export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
  /** Only the last positional may be variadic; it collects the remaining words. */
  readonly variadic?: boolean;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;
export type PositionalSpecs = readonly PositionalSpec[];

type OptionValue<S extends OptionSpec> = S extends { type: "boolean" }
  ? boolean
  : S extends { multiple: true }
    ? readonly (S extends { choices: readonly (infer C extends string)[] } ? C : string)[]
    : (S extends { choices: readonly (infer C extends string)[] } ? C : string) | (S extends { required: true } ? never : undefined);

type PositionalValue<S extends PositionalSpec> = S extends { variadic: true }
  ? readonly string[]
  : S extends { required: true }
    ? string
    : string | undefined;

/** Option values typed from their specs: required strings are `string`, choices narrow to their union. */
export type OptionValues<O extends OptionSpecs> = { readonly [K in keyof O]: OptionValue<O[K]> };
export type PositionalValues<P extends PositionalSpecs> = { readonly [S in P[number] as S["name"]]: PositionalValue<S> };

/** What the parser produces before it is viewed through a command's own types. */
export type RawOptionValues = Readonly<Record<string, string | readonly string[] | boolean | undefined>>;
export type RawPositionalValues = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface GlobalOptions {
  readonly format: Format;
  readonly url: string | undefined;
  readonly token: string | undefined;
  readonly profile: string | undefined;
  readonly noColor: boolean;
  readonly help: boolean;
  readonly version: boolean;
}

export interface CommandContext<OV = RawOptionValues, PV = RawPositionalValues> {
  readonly options: OV;
  readonly args: PV;
  readonly globals: GlobalOptions;
  readonly io: Io;
  readonly out: Output;
  readonly config: ConfigStore;
  readonly registry: Registry;
  /** Resolves flags, environment, profiles and the local dev server; throws when nothing matches. */
  credentials(): Credentials;
  /** A client for the resolved credentials (or the given ones). */
  client(credentials?: Credentials): ApiClient;
}

export interface CommandSpec<O extends OptionSpecs, P extends PositionalSpecs> {
  /** Words that select the command, e.g. `["token", "create"]`; all but the last must name a group. */
  readonly path: readonly string[];
  readonly summary: string;
  /** Longer help text; plain paragraphs. */
  readonly description?: string;
  /** Overrides the generated usage line when the command leans on global flags. */
  readonly usage?: string;
  readonly options?: O;
  readonly positionals?: P;
  readonly examples?: readonly string[];
  /**
   * Lets the command run without its words: when a line's first word names no command
   * and this accepts the line's positional words, the line is read as this command's.
   * At most one command in a table may have it (`run`, for `zectre '*' test.ping`).
   */
  readonly shorthand?: (positionals: readonly string[]) => boolean;
  /** Resolves to the exit code, or to nothing for 0; throwing a CliError prints one error line and exits 1. */
  run(ctx: CommandContext<OptionValues<O>, PositionalValues<P>>): Promise<number | void>;
}

export interface Command {
  readonly kind: "command";
  readonly path: readonly string[];
  readonly summary: string;
  readonly description: string | undefined;
  readonly usage: string | undefined;
  readonly options: OptionSpecs;
  readonly positionals: PositionalSpecs;
  readonly examples: readonly string[];
  readonly shorthand: ((positionals: readonly string[]) => boolean) | undefined;
  run(ctx: CommandContext): Promise<number | void>;
}

export interface Group {
  readonly kind: "group";
  readonly path: readonly string[];
  readonly summary: string;
  readonly description: string | undefined;
}

export type Entry = Command | Group;

export function defineCommand<const O extends OptionSpecs = {}, const P extends PositionalSpecs = []>(
  spec: CommandSpec<O, P>,
): Command {
  return {
    kind: "command",
    path: spec.path,
    summary: spec.summary,
    description: spec.description,
    usage: spec.usage,
    options: spec.options ?? {},
    positionals: spec.positionals ?? [],
    examples: spec.examples ?? [],
    shorthand: spec.shorthand,
    // The parser has validated ctx.options and ctx.args against these very specs,
    // so viewing them through the spec's types is sound.
    run: (ctx) => spec.run(ctx as unknown as CommandContext<OptionValues<O>, PositionalValues<P>>),
  };
}

export function defineGroup(spec: { path: readonly string[]; summary: string; description?: string }): Group {
  return { kind: "group", path: spec.path, summary: spec.summary, description: spec.description };
}
