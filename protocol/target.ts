/**
 * Target expressions: which nodes a job runs on (DESIGN.md, "Jobs"). Pure code, shared
 * by the CLI (to check a target before sending it) and the org's Durable Object (to
 * resolve it against the node directory).
 *
 *   web-*                      glob over the whole node id (`*`, `?`, `[a-z]`, `[!0-9]`)
 *   E@web                      regular expression over the node id, unanchored
 *   G@os:linux                 grain (fact) equality, case-insensitive, `*`/`?` glob the value
 *   G@cpuCount>=4              grain comparison: `>= <= > < !=`, numeric when both sides are numbers
 *   L@web-1,web-2              exact node ids
 *   web-* and not G@os:windows compounds: `not` binds tighter than `and`, `and` tighter than `or`
 *
 * Tokens are separated by whitespace; parentheses need none. Keywords are case-insensitive.
 * Positions in errors are 0-based string indexes into the expression.
 */

/** Longest expression `parseTarget` accepts. */
export const MAX_TARGET_LENGTH = 4096;
/** Longest `E@` regular expression. */
export const MAX_REGEX_LENGTH = 256;
/** Deepest nesting of parentheses and `not`. */
export const MAX_TARGET_DEPTH = 64;

/** `:` is equality (the Salt spelling); the others compare. */
export type GrainOperator = ":" | "!=" | "<" | "<=" | ">" | ">=";

export type TargetExpr =
  | { readonly kind: "glob"; readonly pattern: string }
  | { readonly kind: "regex"; readonly source: string }
  | { readonly kind: "grain"; readonly key: string; readonly op: GrainOperator; readonly value: string }
  | { readonly kind: "list"; readonly ids: readonly string[] }
  | { readonly kind: "not"; readonly operand: TargetExpr }
  | { readonly kind: "and"; readonly operands: readonly TargetExpr[] }
  | { readonly kind: "or"; readonly operands: readonly TargetExpr[] };

export type GlobTarget = Extract<TargetExpr, { kind: "glob" }>;
export type RegexTarget = Extract<TargetExpr, { kind: "regex" }>;
export type GrainTarget = Extract<TargetExpr, { kind: "grain" }>;
export type ListTarget = Extract<TargetExpr, { kind: "list" }>;

export class TargetParseError extends Error {
  /** 0-based index into the expression where the problem is. */
  readonly position: number;
  /** The message without the position. */
  readonly reason: string;

  constructor(reason: string, position: number) {
    super(`${reason} (at position ${position})`);
    this.name = "TargetParseError";
    this.reason = reason;
    this.position = position;
  }
}

/** What a node is matched on: its id and its grains (see `buildGrains`). */
export interface TargetCandidate {
  id: string;
  grains: Record<string, unknown>;
}

/**
 * A candidate whose grains are built on first use: most targets name ids, and building
 * a thousand nodes' grains costs more than matching them.
 */
export function lazyCandidate(id: string, grainsOf: () => Record<string, unknown>): TargetCandidate {
  let grains: Record<string, unknown> | undefined;
  return {
    id,
    get grains() {
      grains ??= grainsOf();
      return grains;
    },
  };
}

// ---- tokens ----

type TokenKind = "(" | ")" | "and" | "or" | "not" | "term";

interface Token {
  kind: TokenKind;
  start: number;
  text: string;
}

const PREFIX = /^([A-Za-z])@/;

function isSpace(char: string): boolean {
  return /\s/.test(char);
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const char = text[i] as string;
    if (isSpace(char)) {
      i++;
      continue;
    }
    if (char === "(" || char === ")") {
      tokens.push({ kind: char, start: i, text: char });
      i++;
      continue;
    }
    const prefix = PREFIX.exec(text.slice(i, i + 2))?.[1];
    // Regexes and grain values may hold parentheses of their own; globs and ids cannot.
    const end = prefix === "E" ? scanRegexWord(text, i + 2) : prefix === "G" ? scanBalancedWord(text, i + 2) : scanPlainWord(text, i);
    const word = text.slice(i, end);
    const lower = word.toLowerCase();
    const kind: TokenKind = lower === "and" || lower === "or" || lower === "not" ? lower : "term";
    tokens.push({ kind, start: i, text: word });
    i = end;
  }
  return tokens;
}

/** A bare word or `L@`: up to whitespace or a parenthesis. */
function scanPlainWord(text: string, i: number): number {
  while (i < text.length) {
    const char = text[i] as string;
    if (isSpace(char) || char === "(" || char === ")") break;
    i++;
  }
  return i;
}

/** A `G@` word: up to whitespace or a `)` that closes nothing inside the word. */
function scanBalancedWord(text: string, i: number): number {
  let depth = 0;
  while (i < text.length) {
    const char = text[i] as string;
    if (isSpace(char)) break;
    if (char === "(") depth++;
    else if (char === ")") {
      if (depth === 0) break;
      depth--;
    }
    i++;
  }
  return i;
}

/** An `E@` word: like `scanBalancedWord`, but escaped and bracketed parentheses don't count. */
function scanRegexWord(text: string, i: number): number {
  let depth = 0;
  let inClass = false;
  while (i < text.length) {
    const char = text[i] as string;
    if (isSpace(char)) break;
    if (char === "\\") {
      const next = text[i + 1];
      i += next === undefined || isSpace(next) ? 1 : 2;
      continue;
    }
    if (inClass) {
      if (char === "]") inClass = false;
    } else if (char === "[") {
      inClass = true;
    } else if (char === "(") {
      depth++;
    } else if (char === ")") {
      if (depth === 0) break;
      depth--;
    }
    i++;
  }
  return i;
}

function quote(text: string): string {
  return `'${text.length > 40 ? `${text.slice(0, 37)}...` : text}'`;
}

// ---- parser ----

/** Parses a target expression; throws `TargetParseError` with the position of the problem. */
export function parseTarget(text: string): TargetExpr {
  if (text.length > MAX_TARGET_LENGTH) {
    throw new TargetParseError(`target expression is longer than ${MAX_TARGET_LENGTH} characters`, MAX_TARGET_LENGTH);
  }
  const tokens = tokenize(text);
  if (tokens.length === 0) throw new TargetParseError("empty target expression", 0);
  const parser = new Parser(text, tokens);
  return parser.parse();
}

class Parser {
  private readonly text: string;
  private readonly tokens: Token[];
  private pos = 0;
  private depth = 0;

  constructor(text: string, tokens: Token[]) {
    this.text = text;
    this.tokens = tokens;
  }

  parse(): TargetExpr {
    const expr = this.parseOr();
    const rest = this.tokens[this.pos];
    if (rest !== undefined) throw this.notAnOperator(rest);
    return expr;
  }

  private parseOr(): TargetExpr {
    const operands = [this.parseAnd()];
    while (this.tokens[this.pos]?.kind === "or") {
      this.pos++;
      operands.push(this.parseAnd());
    }
    return combine("or", operands);
  }

  private parseAnd(): TargetExpr {
    const operands = [this.parseNot()];
    while (this.tokens[this.pos]?.kind === "and") {
      this.pos++;
      operands.push(this.parseNot());
    }
    return combine("and", operands);
  }

  private parseNot(): TargetExpr {
    const token = this.tokens[this.pos];
    if (token?.kind !== "not") return this.parsePrimary();
    this.pos++;
    this.enter(token);
    const operand = this.parseNot();
    this.depth--;
    return { kind: "not", operand };
  }

  private parsePrimary(): TargetExpr {
    const token = this.tokens[this.pos];
    const previous = this.tokens[this.pos - 1];
    const afterOperator = previous !== undefined && (previous.kind === "and" || previous.kind === "or" || previous.kind === "not");
    if (token === undefined) {
      // Only reachable after an operator or '(' (an empty expression is refused earlier).
      throw new TargetParseError(`expected a target after ${quote(previous?.text ?? "")}`, this.text.length);
    }
    switch (token.kind) {
      case ")":
        if (previous?.kind === "(") throw new TargetParseError("empty parentheses", previous.start);
        if (afterOperator) throw new TargetParseError(`expected a target after ${quote(previous.text)}, found ')'`, token.start);
        throw new TargetParseError("unmatched ')'", token.start);
      case "and":
      case "or":
        if (afterOperator) throw new TargetParseError(`expected a target after ${quote(previous.text)}, found ${quote(token.text)}`, token.start);
        throw new TargetParseError(`${quote(token.text)} needs a target before it`, token.start);
      case "not":
        // parseNot consumes 'not'; kept for exhaustiveness.
        return this.parseNot();
      case "(": {
        this.pos++;
        this.enter(token);
        const inner = this.parseOr();
        this.depth--;
        const close = this.tokens[this.pos];
        if (close === undefined) throw new TargetParseError(`missing ')' for the '(' at position ${token.start}`, token.start);
        if (close.kind !== ")") throw this.notAnOperator(close);
        this.pos++;
        return inner;
      }
      case "term":
        this.pos++;
        return parseTerm(token);
    }
  }

  private enter(token: Token): void {
    this.depth++;
    if (this.depth > MAX_TARGET_DEPTH) throw new TargetParseError(`target expression nests deeper than ${MAX_TARGET_DEPTH} levels`, token.start);
  }

  /** A token where only 'and', 'or', ')' or the end may come. */
  private notAnOperator(token: Token): TargetParseError {
    if (token.kind === ")") return new TargetParseError("unmatched ')'", token.start);
    return new TargetParseError(`expected 'and' or 'or' before ${quote(token.text)}`, token.start);
  }
}

/** Builds an n-ary node, flattening nested nodes of the same kind (`a or (b or c)` is `a or b or c`). */
function combine(kind: "and" | "or", operands: TargetExpr[]): TargetExpr {
  if (operands.length === 1) return operands[0] as TargetExpr;
  const flat: TargetExpr[] = [];
  for (const operand of operands) {
    if (operand.kind === kind) flat.push(...operand.operands);
    else flat.push(operand);
  }
  return { kind, operands: flat };
}

function parseTerm(token: Token): TargetExpr {
  const { text: word, start } = token;
  const prefix = PREFIX.exec(word)?.[1];
  if (prefix === undefined) {
    const expr: TargetExpr = { kind: "glob", pattern: word };
    globCache.set(expr, compileGlob(word, start));
    return expr;
  }
  const body = word.slice(2);
  switch (prefix) {
    case "E": {
      if (body === "") throw new TargetParseError("empty regular expression after 'E@'", start);
      const expr: TargetExpr = { kind: "regex", source: body };
      regexCache.set(expr, compileRegex(body, start + 2));
      return expr;
    }
    case "G":
      return parseGrain(body, start);
    case "L":
      return parseList(body, start);
    default: {
      const hint = "ELG".includes(prefix.toUpperCase()) ? ` (did you mean '${prefix.toUpperCase()}@'?)` : " (supported: E@regex, G@key:value, L@id,id)";
      throw new TargetParseError(`unknown target type '${prefix}@'${hint}`, start);
    }
  }
}

function parseList(body: string, start: number): TargetExpr {
  if (body === "") throw new TargetParseError("empty node list after 'L@'", start);
  const ids = body.split(",");
  let offset = start + 2;
  for (const id of ids) {
    if (id === "") throw new TargetParseError("empty node id in 'L@' list", offset);
    offset += id.length + 1;
  }
  return { kind: "list", ids };
}

function parseGrain(body: string, start: number): TargetExpr {
  const at = body.search(/[:<>!]/);
  if (at === -1) {
    const reason = body.includes("=")
      ? "'G@' uses ':' for equality (G@key:value), not '='"
      : "'G@' needs an operator and a value, e.g. G@os:linux or G@cpuCount>=4";
    throw new TargetParseError(reason, start);
  }
  const bodyStart = start + 2;
  const key = body.slice(0, at);
  const char = body[at] as string;
  const twoChar = body[at + 1] === "=";
  let op: GrainOperator;
  if (char === ":") op = ":";
  else if (char === "!") {
    if (!twoChar) throw new TargetParseError("'!' in 'G@' must be followed by '='", bodyStart + at);
    op = "!=";
  } else op = twoChar ? (char === "<" ? "<=" : ">=") : char === "<" ? "<" : ">";
  if (key === "") throw new TargetParseError(`missing grain key before '${op}'`, bodyStart);
  let offset = bodyStart;
  for (const segment of key.split(".")) {
    if (segment === "") throw new TargetParseError("empty segment in grain key", offset);
    offset += segment.length + 1;
  }
  const value = body.slice(at + op.length);
  if (value === "" && op !== ":" && op !== "!=") throw new TargetParseError(`missing value after '${op}'`, bodyStart + body.length);
  const expr: TargetExpr = { kind: "grain", key, op, value };
  grainCache.set(expr, compileGrain(expr));
  return expr;
}

// ---- globs ----

type GlobPart =
  | { t: "char"; c: string }
  | { t: "any" }
  | { t: "star" }
  | { t: "class"; negated: boolean; ranges: Array<readonly [number, number]> };

/** Compiles a node-id glob: `*`, `?` and `[...]` classes (ranges, `!` or `^` negation, leading `]` literal). */
function compileGlob(pattern: string, start: number): GlobPart[] {
  const chars = Array.from(pattern);
  const parts: GlobPart[] = [];
  // Positions are string indexes; track them alongside code points.
  let index = start;
  let i = 0;
  while (i < chars.length) {
    const char = chars[i] as string;
    if (char === "*") {
      if (parts[parts.length - 1]?.t !== "star") parts.push({ t: "star" });
    } else if (char === "?") {
      parts.push({ t: "any" });
    } else if (char === "[") {
      const openAt = index;
      let j = i + 1;
      let at = index + 1;
      let negated = false;
      if (chars[j] === "!" || chars[j] === "^") {
        negated = true;
        at += 1;
        j++;
      }
      const ranges: Array<readonly [number, number]> = [];
      let first = true;
      while (j < chars.length && (chars[j] !== "]" || first)) {
        const low = chars[j] as string;
        const high = chars[j + 2];
        if (chars[j + 1] === "-" && high !== undefined && high !== "]") {
          const lowCode = low.codePointAt(0) as number;
          const highCode = high.codePointAt(0) as number;
          if (lowCode > highCode) throw new TargetParseError(`invalid range '${low}-${high}' in glob`, at);
          ranges.push([lowCode, highCode]);
          at += low.length + 1 + high.length;
          j += 3;
        } else {
          const code = low.codePointAt(0) as number;
          ranges.push([code, code]);
          at += low.length;
          j++;
        }
        first = false;
      }
      if (j >= chars.length) throw new TargetParseError("unclosed '[' in glob", openAt);
      parts.push({ t: "class", negated, ranges });
      index = at + 1;
      i = j + 1;
      continue;
    } else {
      parts.push({ t: "char", c: char });
    }
    index += char.length;
    i++;
  }
  return parts;
}

/** Compiles a grain-value glob: only `*` and `?` are special (as in Salt's grain matching). */
function compileValueGlob(pattern: string): GlobPart[] {
  const parts: GlobPart[] = [];
  for (const char of pattern) {
    if (char === "*") {
      if (parts[parts.length - 1]?.t !== "star") parts.push({ t: "star" });
    } else if (char === "?") parts.push({ t: "any" });
    else parts.push({ t: "char", c: char });
  }
  return parts;
}

function partMatches(part: GlobPart, char: string): boolean {
  switch (part.t) {
    case "char":
      return part.c === char;
    case "any":
      return true;
    case "star":
      return false;
    case "class": {
      const code = char.codePointAt(0) as number;
      const inside = part.ranges.some(([low, high]) => code >= low && code <= high);
      return inside !== part.negated;
    }
  }
}

/** Whole-string glob match in O(pattern × text) without backtracking blow-ups. */
function globMatch(parts: readonly GlobPart[], text: string): boolean {
  const chars = Array.from(text);
  let p = 0;
  let i = 0;
  let starPart = -1;
  let starText = 0;
  while (i < chars.length) {
    const part = parts[p];
    if (part?.t === "star") {
      starPart = p++;
      starText = i;
      continue;
    }
    if (part !== undefined && partMatches(part, chars[i] as string)) {
      p++;
      i++;
      continue;
    }
    if (starPart === -1) return false;
    p = starPart + 1;
    i = ++starText;
  }
  while (parts[p]?.t === "star") p++;
  return p === parts.length;
}

function hasValueGlob(value: string): boolean {
  return value.includes("*") || value.includes("?");
}

// ---- regular expressions ----

function compileRegex(source: string, position: number): RegExp {
  if (source.length > MAX_REGEX_LENGTH) throw new TargetParseError(`regular expression is longer than ${MAX_REGEX_LENGTH} characters`, position);
  let regex: RegExp;
  try {
    regex = new RegExp(source);
  } catch (error) {
    const message = error instanceof Error ? error.message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, "") : String(error);
    throw new TargetParseError(`invalid regular expression: ${message}`, position);
  }
  checkRegexSafety(source, position);
  return regex;
}

/**
 * Refuses the classic catastrophic-backtracking shape: a repeated group that itself
 * contains a quantifier or an alternation (`(a+)+`, `(a|a)*`, `(x\d*){2,}`). A heuristic,
 * not a proof; node ids are at most 128 characters, which bounds what is left.
 * Assumes `source` already compiled.
 */
function checkRegexSafety(source: string, position: number): void {
  interface Frame {
    risky: boolean;
  }
  const stack: Frame[] = [{ risky: false }];
  let lastGroup: Frame | null = null;
  let i = 0;
  while (i < source.length) {
    const char = source[i] as string;
    const top = stack[stack.length - 1] as Frame;
    if (char === "\\") {
      i += 2;
      lastGroup = null;
    } else if (char === "[") {
      i = skipClass(source, i);
      lastGroup = null;
    } else if (char === "(") {
      stack.push({ risky: false });
      i += groupPrefixLength(source, i);
      lastGroup = null;
    } else if (char === ")") {
      const closed = stack.pop() as Frame;
      const parent = stack[stack.length - 1];
      if (parent !== undefined && closed.risky) parent.risky = true;
      lastGroup = closed;
      i++;
    } else if (char === "|") {
      top.risky = true;
      lastGroup = null;
      i++;
    } else {
      const quantifier = readQuantifier(source, i);
      if (quantifier === null) {
        lastGroup = null;
        i++;
        continue;
      }
      if (quantifier.repeats && lastGroup?.risky === true) {
        throw new TargetParseError(
          "regular expression repeats a group that contains a quantifier or '|' (risk of catastrophic backtracking); simplify it",
          position + i,
        );
      }
      top.risky = true;
      lastGroup = null;
      i = quantifier.end;
    }
  }
}

function skipClass(source: string, i: number): number {
  i++;
  while (i < source.length) {
    const char = source[i];
    if (char === "\\") i += 2;
    else if (char === "]") return i + 1;
    else i++;
  }
  return i;
}

function groupPrefixLength(source: string, i: number): number {
  if (source[i + 1] !== "?") return 1;
  const next = source[i + 2];
  if (next === "<" && source[i + 3] !== "=" && source[i + 3] !== "!") {
    const close = source.indexOf(">", i + 3);
    return close === -1 ? 3 : close - i + 1;
  }
  return next === "<" ? 4 : 3;
}

function readQuantifier(source: string, i: number): { repeats: boolean; end: number } | null {
  const char = source[i];
  let repeats: boolean;
  let end: number;
  if (char === "*" || char === "+" || char === "?") {
    repeats = char !== "?";
    end = i + 1;
  } else if (char === "{") {
    const match = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
    if (match === null) return null;
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === "" ? Number.POSITIVE_INFINITY : Number(match[3]);
    repeats = max > 1;
    end = i + match[0].length;
  } else {
    return null;
  }
  if (source[end] === "?") end++;
  return { repeats, end };
}

// ---- grains ----

interface CompiledGrain {
  path: string[];
  op: GrainOperator;
  lower: string;
  number: number | null;
  glob: GlobPart[] | null;
}

function compileGrain(expr: GrainTarget): CompiledGrain {
  const lower = expr.value.toLowerCase();
  const isEquality = expr.op === ":" || expr.op === "!=";
  return {
    path: expr.key.split("."),
    op: expr.op,
    lower,
    number: parseNumber(expr.value),
    glob: isEquality && hasValueGlob(lower) ? compileValueGlob(lower) : null,
  };
}

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

/** Decimal numbers only (`4`, `-1.5`, `1e9`); no hex, no `Infinity`, no surrounding space. */
function parseNumber(text: string): number | null {
  if (!NUMBER.test(text)) return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Collects the values at a dotted path. Keys that themselves contain dots
 * (`labels.app.kubernetes.io/name`) are found by trying the longest key first; a
 * numeric segment indexes an array, any other segment applies to every element.
 * Null and missing values are left out.
 */
function lookup(value: unknown, path: readonly string[], from: number, out: unknown[]): void {
  if (from === path.length) {
    if (value !== undefined && value !== null) out.push(value);
    return;
  }
  if (Array.isArray(value)) {
    const segment = path[from] as string;
    if (/^\d+$/.test(segment)) {
      lookup(value[Number(segment)], path, from + 1, out);
    } else {
      for (const element of value) lookup(element, path, from, out);
    }
    return;
  }
  if (!isRecord(value)) return;
  for (let end = path.length; end > from; end--) {
    const key = path.slice(from, end).join(".");
    if (Object.hasOwn(value, key)) {
      lookup(value[key], path, end, out);
      return;
    }
  }
}

function scalarText(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : null;
  if (typeof value === "boolean") return value ? "true" : "false";
  return null;
}

function scalarNumber(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string") return parseNumber(value);
  return null;
}

/** Equality of one fact value (an array matches when any element does). */
function equalsValue(value: unknown, grain: CompiledGrain): boolean {
  if (Array.isArray(value)) return value.some((element) => equalsValue(element, grain));
  const text = scalarText(value);
  if (text === null) return false;
  if (grain.glob !== null) return globMatch(grain.glob, text.toLowerCase());
  const number = scalarNumber(value);
  if (number !== null && grain.number !== null) return number === grain.number;
  return text.toLowerCase() === grain.lower;
}

/** Ordering of one fact value: numeric when both sides are numbers, else case-insensitive string order. */
function comparesValue(value: unknown, grain: CompiledGrain): boolean {
  if (Array.isArray(value)) return value.some((element) => comparesValue(element, grain));
  const text = scalarText(value);
  if (text === null) return false;
  const number = scalarNumber(value);
  let order: number;
  if (number !== null && grain.number !== null) order = number - grain.number;
  else {
    const lower = text.toLowerCase();
    order = lower < grain.lower ? -1 : lower > grain.lower ? 1 : 0;
  }
  switch (grain.op) {
    case "<":
      return order < 0;
    case "<=":
      return order <= 0;
    case ">":
      return order > 0;
    case ">=":
      return order >= 0;
    default:
      return false;
  }
}

function matchGrain(grain: CompiledGrain, grains: Record<string, unknown>): boolean {
  const values: unknown[] = [];
  lookup(grains, grain.path, 0, values);
  if (values.length === 0) return false;
  if (grain.op === ":") return values.some((value) => equalsValue(value, grain));
  // '!=' is exactly "present and not ':'": for an array, no element may equal the value.
  if (grain.op === "!=") return !values.some((value) => equalsValue(value, grain));
  return values.some((value) => comparesValue(value, grain));
}

// ---- matching ----

// Compiled forms, keyed by AST node: the AST stays plain data (it can be stored and sent),
// and a node built elsewhere is compiled on first use.
const globCache = new WeakMap<object, GlobPart[]>();
const regexCache = new WeakMap<object, RegExp>();
const grainCache = new WeakMap<object, CompiledGrain>();
const listCache = new WeakMap<object, ReadonlySet<string>>();

function cached<K extends object, V>(cache: WeakMap<object, V>, key: K, make: (key: K) => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make(key);
    cache.set(key, value);
  }
  return value;
}

/** Whether one node matches. Throws `TargetParseError` only for a hand-built, invalid AST. */
export function matchTarget(expr: TargetExpr, node: TargetCandidate): boolean {
  switch (expr.kind) {
    case "glob":
      return globMatch(cached(globCache, expr, (e) => compileGlob(e.pattern, 0)), node.id);
    case "regex":
      return cached(regexCache, expr, (e) => compileRegex(e.source, 2)).test(node.id);
    case "list":
      return cached(listCache, expr, (e) => new Set(e.ids)).has(node.id);
    case "grain":
      return matchGrain(cached(grainCache, expr, compileGrain), node.grains);
    case "not":
      return !matchTarget(expr.operand, node);
    case "and":
      return expr.operands.every((operand) => matchTarget(operand, node));
    case "or":
      return expr.operands.some((operand) => matchTarget(operand, node));
  }
}

/** The ids of `nodes` that `text` matches, in input order. Throws `TargetParseError`. */
export function resolveTarget(text: string, nodes: readonly TargetCandidate[]): string[] {
  const expr = parseTarget(text);
  const candidates = targetCandidateIds(expr);
  const allowed = candidates === null ? null : new Set(candidates);
  const ids: string[] = [];
  for (const node of nodes) {
    if ((allowed === null || allowed.has(node.id)) && matchTarget(expr, node)) ids.push(node.id);
  }
  return ids;
}

/**
 * Fast path: the only ids `expr` can match (a superset; `matchTarget` still decides),
 * or null when any id might match. Non-null for plain ids, `L@` lists, `or` of those, and
 * `and` with at least one such operand: a caller can then load just those nodes.
 */
export function targetCandidateIds(expr: TargetExpr): string[] | null {
  switch (expr.kind) {
    case "glob":
      return /[*?[]/.test(expr.pattern) ? null : [expr.pattern];
    case "list":
      return [...new Set(expr.ids)];
    case "regex":
    case "grain":
    case "not":
      return null;
    case "or": {
      const union = new Set<string>();
      for (const operand of expr.operands) {
        const ids = targetCandidateIds(operand);
        if (ids === null) return null;
        for (const id of ids) union.add(id);
      }
      return [...union];
    }
    case "and": {
      let result: string[] | null = null;
      for (const operand of expr.operands) {
        const ids = targetCandidateIds(operand);
        if (ids === null) continue;
        if (result === null) result = ids;
        else {
          const keep = new Set(ids);
          result = result.filter((id) => keep.has(id));
        }
      }
      return result;
    }
  }
}

/** Whether matching needs grains (any `G@` term); without one, ids alone decide. */
export function targetUsesGrains(expr: TargetExpr): boolean {
  switch (expr.kind) {
    case "grain":
      return true;
    case "glob":
    case "regex":
    case "list":
      return false;
    case "not":
      return targetUsesGrains(expr.operand);
    case "and":
    case "or":
      return expr.operands.some(targetUsesGrains);
  }
}

/**
 * Canonical text for a parsed expression: lower-case keywords, single spaces,
 * parentheses only where precedence needs them. `parseTarget(describeTarget(e))`
 * gives back `e` for any `e` that `parseTarget` produced.
 */
export function describeTarget(expr: TargetExpr): string {
  switch (expr.kind) {
    case "glob":
      return expr.pattern;
    case "regex":
      return `E@${expr.source}`;
    case "grain":
      return `G@${expr.key}${expr.op}${expr.value}`;
    case "list":
      return `L@${expr.ids.join(",")}`;
    case "not": {
      const inner = describeTarget(expr.operand);
      return expr.operand.kind === "and" || expr.operand.kind === "or" ? `not (${inner})` : `not ${inner}`;
    }
    case "and":
      return expr.operands.map((operand) => (operand.kind === "or" ? `(${describeTarget(operand)})` : describeTarget(operand))).join(" and ");
    case "or":
      return expr.operands.map(describeTarget).join(" or ");
  }
}

// ---- grains from facts and labels ----


/** Sets an own property even for keys like `__proto__` (facts come from agents). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The grains a node is matched on: every fact at top level; custom facts also at top
 * level where they don't clash with a built-in fact (so `G@role:web` finds custom
 * `role`) and still under `custom.`; labels under `labels.` (`G@labels.env:prod`).
 * A node without facts has only its labels.
 */
export function buildGrains(facts: Record<string, unknown> | null, labels: Record<string, string>): Record<string, unknown> {
  const grains: Record<string, unknown> = {};
  if (facts !== null) {
    for (const [key, value] of Object.entries(facts)) setOwn(grains, key, value);
    const custom = facts["custom"];
    if (isRecord(custom)) {
      for (const [key, value] of Object.entries(custom)) {
        // Built-in facts are all present (the schema requires them), so "not already a
        // top-level fact" is "not built in"; `labels` is kept for the labels.
        if (key !== "labels" && !Object.hasOwn(grains, key)) setOwn(grains, key, value);
      }
    }
  }
  const labelGrains: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) setOwn(labelGrains, key, value);
  setOwn(grains, "labels", labelGrains);
  return grains;
}
