import type { ProgressSink } from "./artifacts.ts";
import { formatBytes } from "./deploy-format.ts";
import type { Io, OutputStream } from "./io.ts";

/**
 * Progress on stderr, never stdout (which holds results, possibly JSON). A
 * terminal gets one line redrawn in place; a log or a pipe gets a line at 0, 25,
 * 50, 75 and 100 percent, so CI output shows movement without thousands of lines.
 */

export interface ProgressBar {
  update(done: number, total: number): void;
}

const BAR_WIDTH = 24;
const MILESTONES = [0, 25, 50, 75, 100] as const;

function percentOf(done: number, total: number): number {
  if (total <= 0) return 100;
  return Math.min(100, Math.floor((done / total) * 100));
}

function amounts(done: number, total: number): string {
  return `${formatBytes(Math.min(done, total))} of ${formatBytes(total)}`;
}

/** Redraws when the whole percent changes, and ends its line at 100%. */
function terminalBar(stream: OutputStream, label: string): ProgressBar {
  let drawn = -1;
  return {
    update(done, total) {
      const percent = percentOf(done, total);
      if (percent === drawn || drawn === 100) return;
      drawn = percent;
      const filled = Math.round((percent / 100) * BAR_WIDTH);
      const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
      stream.write(`\r\u001b[2K${label} [${bar}] ${String(percent).padStart(3)}%  ${amounts(done, total)}${percent === 100 ? "\n" : ""}`);
    },
  };
}

/** One line per milestone reached, each at most once; a jump past several prints only the highest. */
function milestoneLines(stream: OutputStream, label: string): ProgressBar {
  let next = 0;
  return {
    update(done, total) {
      const percent = percentOf(done, total);
      let reached = -1;
      while (next < MILESTONES.length && percent >= (MILESTONES[next] as number)) reached = MILESTONES[next++] as number;
      if (reached >= 0) stream.write(`${label}: ${reached}% (${amounts(done, total)})\n`);
    },
  };
}

export function progressBar(stream: OutputStream, label: string): ProgressBar {
  return stream.isTTY === true ? terminalBar(stream, label) : milestoneLines(stream, label);
}

/** The sink `prepareArtifacts` reports to: one bar per layer and phase, e.g. `uploading deps`. */
export function stderrProgress(io: Pick<Io, "stderr">): ProgressSink {
  const bars = new Map<string, ProgressBar>();
  return ({ layer, phase, done, total }) => {
    const key = `${phase} ${layer}`;
    let bar = bars.get(key);
    if (!bar) {
      bar = progressBar(io.stderr, `${phase === "pack" ? "packing" : "uploading"} ${layer}`);
      bars.set(key, bar);
    }
    bar.update(done, total);
  };
}
