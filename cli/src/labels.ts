import { LabelKey, LabelValue, type Labels } from "../../protocol/nodes.ts";
import { UsageError } from "./errors.ts";

/** Label arguments shared by `node token create --label`, `node label` and `settings --label`. */

/**
 * `KEY=VALUE` with exactly one `=`: `a=b=c` is refused rather than guessed at.
 * `what` names the source in messages, e.g. `--label` or `label`.
 */
export function parseLabel(text: string, what: string, commandPath: readonly string[]): { key: string; value: string } {
  const parts = text.split("=");
  if (parts.length !== 2) throw new UsageError(`invalid ${what} '${text}': write KEY=VALUE with a single '='`, commandPath);
  const [key, value] = parts as [string, string];
  checkKey(key, what, text, commandPath);
  if (!LabelValue.safeParse(value).success) {
    throw new UsageError(`invalid ${what} '${text}': label values are at most 128 characters`, commandPath);
  }
  return { key, value };
}

/** Repeated `--label k=v` flags as one record; a key given twice is a mistake. */
export function parseLabels(texts: readonly string[], what: string, commandPath: readonly string[]): Labels {
  const labels: Labels = {};
  for (const text of texts) {
    const { key, value } = parseLabel(text, what, commandPath);
    if (Object.hasOwn(labels, key)) throw new UsageError(`label '${key}' is given twice`, commandPath);
    labels[key] = value;
  }
  return labels;
}

/** kubectl's syntax: `k=v` sets a label, `k-` removes it (null in SetLabelsBody). */
export function parseLabelChanges(texts: readonly string[], commandPath: readonly string[]): Record<string, string | null> {
  const changes: Record<string, string | null> = {};
  for (const text of texts) {
    let key: string;
    let value: string | null;
    if (!text.includes("=") && text.endsWith("-")) {
      key = text.slice(0, -1);
      checkKey(key, "label", text, commandPath);
      value = null;
    } else if (text.includes("=")) {
      ({ key, value } = parseLabel(text, "label", commandPath));
    } else {
      throw new UsageError(`invalid label '${text}': write KEY=VALUE to set a label or KEY- to remove it`, commandPath);
    }
    if (Object.hasOwn(changes, key)) throw new UsageError(`label '${key}' is given twice`, commandPath);
    changes[key] = value;
  }
  return changes;
}

function checkKey(key: string, what: string, text: string, commandPath: readonly string[]): void {
  const parsed = LabelKey.safeParse(key);
  if (!parsed.success) {
    throw new UsageError(`invalid ${what} '${text}': ${parsed.error.issues[0]?.message ?? "bad label key"}`, commandPath);
  }
}

/** `env=prod,role=web`, sorted by key, or `missing` when there are none. */
export function formatLabels(labels: Labels, missing = "-"): string {
  const pairs = Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`);
  return pairs.length === 0 ? missing : pairs.join(",");
}
