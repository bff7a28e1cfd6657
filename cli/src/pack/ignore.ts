/**
 * gitignore syntax, as `git` reads it (gitignore(5)): comments, blank lines, `!`
 * negation, trailing `/` for directories only, a `/` at the start or in the middle
 * anchoring the pattern to its file's directory, `*`, `?`, `[...]` and `**`.
 * `.gitignore` files apply to their own subtree, deeper ones taking precedence;
 * the root `.zectreignore` goes on top of them all.
 */

export interface IgnoreRule {
  /** The line as written, for messages and tests. */
  readonly source: string;
  readonly negate: boolean;
  readonly dirOnly: boolean;
  readonly regex: RegExp;
}

/** Never packed, whatever the ignore files say: the repository and Zectre's own local state. */
export const ALWAYS_EXCLUDED: readonly string[] = [".git", ".zectre"];

function escapeRegex(char: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(char) ? `\\${char}` : char;
}

/** `[...]` from `start` (the `[`): the regex class and where it ends, or null when it never closes (then `[` is literal). */
function bracket(glob: string, start: number): { regex: string; end: number } | null {
  let i = start + 1;
  let negate = false;
  if (glob[i] === "!" || glob[i] === "^") {
    negate = true;
    i++;
  }
  let body = "";
  // A `]` right after the opening (or its negation) is a member, not the end.
  if (glob[i] === "]") {
    body += "\\]";
    i++;
  }
  for (; i < glob.length; i++) {
    const char = glob[i] as string;
    if (char === "]") return { regex: negate ? `[^/${body}]` : `(?!/)[${body}]`, end: i };
    if (char === "\\" && i + 1 < glob.length) {
      body += `\\${glob[++i]}`;
    } else if (char === "-") {
      body += "-";
    } else {
      body += /[\\^\]]/.test(char) ? `\\${char}` : char;
    }
  }
  return null;
}

/** The regex body of a glob, `**` rules included; the caller anchors it. */
function globToRegex(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] as string;
    const atSegmentStart = i === 0 || glob[i - 1] === "/";
    if (char === "*" && glob[i + 1] === "*" && atSegmentStart && (i + 2 === glob.length || glob[i + 2] === "/")) {
      // `**` at the end matches everything inside; `**/` matches zero or more whole directories.
      out += i + 2 === glob.length ? ".*" : "(?:[^/]*/)*";
      i += i + 2 === glob.length ? 1 : 2;
      continue;
    }
    if (char === "*") out += "[^/]*";
    else if (char === "?") out += "[^/]";
    else if (char === "[") {
      const cls = bracket(glob, i);
      if (cls) {
        out += cls.regex;
        i = cls.end;
      } else out += "\\[";
    } else if (char === "\\" && i + 1 < glob.length) out += escapeRegex(glob[++i] as string);
    else out += escapeRegex(char);
  }
  return out;
}

/** Trailing spaces end a pattern unless escaped with a backslash. */
function trimTrailingSpaces(line: string): string {
  let end = line.length;
  while (end > 0 && line[end - 1] === " " && line[end - 2] !== "\\") end--;
  return line.slice(0, end);
}

export function parseIgnoreLine(raw: string): IgnoreRule | null {
  let line = trimTrailingSpaces(raw.replace(/\r$/, ""));
  if (line === "" || line.startsWith("#")) return null;
  let negate = false;
  if (line.startsWith("!")) {
    negate = true;
    line = line.slice(1);
  } else if (line.startsWith("\\!") || line.startsWith("\\#")) {
    line = line.slice(1);
  }
  let dirOnly = false;
  if (line.endsWith("/") && !line.endsWith("\\/")) {
    dirOnly = true;
    line = line.replace(/\/+$/, "");
  }
  if (line === "") return null;
  // A slash anywhere but the end ties the pattern to the ignore file's own directory.
  const anchored = line.includes("/");
  const glob = line.startsWith("/") ? line.slice(1) : line;
  const body = globToRegex(glob);
  const regex = new RegExp(anchored ? `^${body}$` : `^(?:.*/)?${body}$`);
  return { source: raw, negate, dirOnly, regex };
}

export function parseIgnore(text: string): IgnoreRule[] {
  return text.split("\n").flatMap((line) => {
    const rule = parseIgnoreLine(line);
    return rule ? [rule] : [];
  });
}

/** The rules of one ignore file, which speak of paths relative to `base` ("" for the root). */
export interface IgnoreLayer {
  readonly base: string;
  readonly rules: readonly IgnoreRule[];
}

/**
 * Decides whether a path (relative to the packed root, `/`-separated) is ignored.
 * Layers are consulted from lowest to highest precedence and the last matching
 * rule wins, so a `!` line re-includes what an earlier rule excluded.
 */
export class IgnoreMatcher {
  readonly #gitLayers: readonly IgnoreLayer[];
  readonly #top: IgnoreLayer | null;

  constructor(gitLayers: readonly IgnoreLayer[] = [], top: IgnoreLayer | null = null) {
    this.#gitLayers = gitLayers;
    this.#top = top;
  }

  /** A matcher for a subtree that has its own `.gitignore`: deeper files outrank shallower ones. */
  withNested(layer: IgnoreLayer): IgnoreMatcher {
    return layer.rules.length === 0 ? this : new IgnoreMatcher([...this.#gitLayers, layer], this.#top);
  }

  ignores(path: string, isDir: boolean): boolean {
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (isDir && ALWAYS_EXCLUDED.includes(name)) return true;
    let ignored = false;
    const layers = this.#top ? [...this.#gitLayers, this.#top] : this.#gitLayers;
    for (const layer of layers) {
      const relative = relativeTo(layer.base, path);
      if (relative === null) continue;
      for (const rule of layer.rules) {
        if (rule.dirOnly && !isDir) continue;
        if (rule.regex.test(relative)) ignored = !rule.negate;
      }
    }
    return ignored;
  }
}

function relativeTo(base: string, path: string): string | null {
  if (base === "") return path;
  return path.startsWith(`${base}/`) ? path.slice(base.length + 1) : null;
}
