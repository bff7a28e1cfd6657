// @ts-check
import { messageOf } from "../api.js";
import { h, notice } from "../dom.js";
import { enc } from "../page.js";

/** @typedef {import("../types.js").LogLine} LogLine */

const KEEP_LINES = 2000;
const RETRY_MS = 2000;

/**
 * A deployment's logs, following live. After a dropped stream it resumes from the last line's time and skips
 * lines already shown (by their sequence number), so nothing repeats.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const app = ctx.params.app ?? "";
  const id = ctx.params.id ?? "";
  const status = notice("Connecting…");
  const lines = h("ol", { class: "log", id: "log-lines", "aria-label": `Log lines of ${id}` });
  const stop = new AbortController();
  let lastSeq = -1;
  /** @type {string | null} */
  let lastTs = null;

  /** @param {unknown} data */
  const add = (data) => {
    const line = /** @type {LogLine} */ (data);
    if (typeof line.seq !== "number" || line.seq <= lastSeq) return;
    lastSeq = line.seq;
    lastTs = line.ts;
    const follow = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    lines.append(h("li", { class: line.stream === "stderr" ? "stderr" : "stdout" },
      h("span", { class: "log-meta" }, `${line.ts} ${line.nodeId}/${line.taskId} ${line.stream === "stderr" ? "!" : "|"} `),
      line.line));
    while (lines.childElementCount > KEEP_LINES) lines.firstElementChild?.remove();
    if (follow) lines.scrollTop = lines.scrollHeight;
  };

  const follow = async () => {
    while (!stop.signal.aborted) {
      const since = lastTs === null ? "" : `&since=${enc(lastTs)}`;
      try {
        status.textContent = "Following live.";
        await ctx.api.stream(`/apps/${enc(app)}/logs?follow=1&limit=500&deployment=${enc(id)}${since}`, add, stop.signal);
      } catch (error) {
        if (stop.signal.aborted) return;
        status.textContent = `Log stream interrupted (${messageOf(error)}); retrying…`;
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  };
  void follow();

  return {
    title: `Logs of ${id}`,
    root: h("div", {}, h("p", {}, h("a", { href: `#/apps/${enc(app)}` }, `← App ${app}`)), h("h1", {}, `Logs of ${id}`), status, lines),
    dispose: () => stop.abort(),
  };
}
