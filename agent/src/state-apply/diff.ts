/**
 * A unified-style line diff with one hunk (the changed span plus 3 lines of
 * context), enough to see what a `file.managed` changed. Large changes fall back
 * to "all old lines removed, all new lines added"; the text is capped.
 */

const CONTEXT = 3;
const MAX_CELLS = 1_000_000;
export const MAX_DIFF_CHARS = 64 * 1024;

function lines(text: string): string[] {
  if (text === "") return [];
  const list = text.split("\n");
  if (list.at(-1) === "") list.pop();
  return list;
}

export function lineDiff(before: string, after: string, label: string): string {
  const a = lines(before);
  const b = lines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const middle = changedLines(a.slice(start, endA), b.slice(start, endB));
  const head = a.slice(Math.max(0, start - CONTEXT), start).map((line) => ` ${line}`);
  const tail = a.slice(endA, endA + CONTEXT).map((line) => ` ${line}`);
  const fromA = start - head.length;
  const countA = head.length + (endA - start) + tail.length;
  const countB = head.length + (endB - start) + tail.length;
  const out = [`--- ${label}`, `+++ ${label}`, `@@ -${fromA + 1},${countA} +${fromA + 1},${countB} @@`, ...head, ...middle, ...tail];
  if (before !== "" && !before.endsWith("\n") && after.endsWith("\n")) out.push("\\ old text had no newline at end of file");
  if (after !== "" && !after.endsWith("\n") && (before === "" || before.endsWith("\n"))) out.push("\\ no newline at end of file");
  const text = out.join("\n");
  return text.length > MAX_DIFF_CHARS ? `${text.slice(0, MAX_DIFF_CHARS)}\n[diff truncated]` : text;
}

/** The edit script between two spans (longest common subsequence), as -/+/space lines. */
function changedLines(a: readonly string[], b: readonly string[]): string[] {
  if (a.length === 0 || b.length === 0 || a.length * b.length > MAX_CELLS) {
    return [...a.map((line) => `-${line}`), ...b.map((line) => `+${line}`)];
  }
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? (lcs[(i + 1) * width + j + 1] as number) + 1 : Math.max(lcs[(i + 1) * width + j] as number, lcs[i * width + j + 1] as number);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push(` ${a[i] as string}`);
      i++;
      j++;
    } else if ((lcs[(i + 1) * width + j] as number) >= (lcs[i * width + j + 1] as number)) {
      out.push(`-${a[i++] as string}`);
    } else {
      out.push(`+${b[j++] as string}`);
    }
  }
  while (i < a.length) out.push(`-${a[i++] as string}`);
  while (j < b.length) out.push(`+${b[j++] as string}`);
  return out;
}
