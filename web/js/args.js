// @ts-check
/**
 * The run form's one-line arguments, read the way `zectre run` reads its words (cli/src/jobs.ts):
 * `key=value` is a keyword argument (JSON when it parses, else text), other words are positional under `_`,
 * and for cmd.run the positional words are the command. Quotes group words: `"ls -la /tmp"`.
 */

const KWARG = /^([a-z_][a-z0-9_]*)=(.*)$/s;

/**
 * @param {string} line
 * @returns {string[]}
 */
export function splitWords(line) {
  const words = [];
  let word = "";
  let quote = "";
  let started = false;
  for (const ch of line) {
    if (quote !== "") {
      if (ch === quote) quote = "";
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      started = true;
    } else if (/\s/.test(ch)) {
      if (started) words.push(word);
      word = "";
      started = false;
    } else {
      word += ch;
      started = true;
    }
  }
  if (quote !== "") throw new Error(`unclosed ${quote} in the arguments`);
  if (started) words.push(word);
  return words;
}

/** @param {string} text */
function argValue(text) {
  try {
    const value = JSON.parse(text);
    return typeof value === "number" && !Number.isFinite(value) ? text : value;
  } catch {
    return text;
  }
}

/**
 * @param {string} fn
 * @param {string} line
 * @returns {Record<string, unknown>}
 */
export function jobArgs(fn, line) {
  const isCmd = fn === "cmd.run";
  /** @type {Map<string, unknown>} */
  const kwargs = new Map();
  const positional = [];
  for (const word of splitWords(line)) {
    const match = isCmd && /\s/.test(word) ? null : KWARG.exec(word);
    if (!match) {
      positional.push(word);
      continue;
    }
    const key = match[1] ?? "";
    if (key === "_" || kwargs.has(key)) throw new Error(`keyword argument '${key}' cannot be given ${key === "_" ? "as key=value" : "twice"}`);
    kwargs.set(key, argValue(match[2] ?? ""));
  }
  if (positional.length > 0) kwargs.set(isCmd ? "cmd" : "_", isCmd ? positional.join(" ") : positional);
  return Object.fromEntries(kwargs);
}
