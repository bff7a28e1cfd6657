// @ts-check
import { messageOf } from "../api.js";
import { badge, h, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").JobRecord} JobRecord */
/** @typedef {import("../types.js").JobEvent} JobEvent */

const ACTIVE = ["claimed", "running"];

/** @param {unknown} result */
function resultText(result) {
  return typeof result === "string" ? result : JSON.stringify(result, null, 2);
}

/**
 * One job: its per-node returns fill in as they arrive (the job's own event stream), and an active job can be killed.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const jid = ctx.params.jid ?? "";
  const status = notice();
  const head = h("div");
  const returns = h("section", { "aria-labelledby": "returns-title" });
  const root = h("div", {}, h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")), h("h1", {}, `Job ${jid}`), status, head, returns);
  const stop = new AbortController();

  const kill = async () => {
    try {
      await ctx.api.post(`/jobs/${enc(jid)}/cancel`);
      status.textContent = "Kill requested.";
      reload();
    } catch (error) {
      status.textContent = `Could not kill the job: ${messageOf(error)}`;
    }
  };

  // One button for the page's life: a redraw on every job event must not take the keyboard focus away from it.
  const killButton = h("button", { type: "button", class: "danger", onclick: kill }, "Kill job");

  /** @param {JobRecord} job */
  const draw = (job) => {
    const active = ACTIVE.includes(job.status);
    const hadFocus = document.activeElement === killButton;
    replace(head, h("dl", { class: "facts-summary" },
      h("dt", {}, "State"), h("dd", { id: "job-status" }, badge(job.status)),
      h("dt", {}, "Function"), h("dd", {}, job.function),
      h("dt", {}, "Target"), h("dd", {}, h("code", {}, job.target)),
      h("dt", {}, "Arguments"), h("dd", {}, h("code", {}, JSON.stringify(job.args))),
      h("dt", {}, "Returned"), h("dd", {}, `${job.counts.returned} of ${job.counts.targets} (${job.counts.succeeded} ok, ${job.counts.failed} failed, ${job.counts.unreachable} unreachable)`),
      h("dt", {}, "Started"), h("dd", {}, when(job.createdAt)),
      h("dt", {}, "Finished"), h("dd", {}, when(job.finishedAt))),
      active ? killButton : null);
    if (active && hadFocus) killButton.focus();
    replace(returns, h("h2", { id: "returns-title" }, "Returns"), table(
      ["Node", "State", "Result", "Took"],
      job.targets.map((t) => {
        const ret = t.return;
        const outcome = ret === null ? t.state : ret.synthetic ? "unreachable" : ret.success ? "succeeded" : "failed";
        return [
          t.nodeId,
          h("span", { "data-return-node": t.nodeId }, badge(outcome)),
          ret === null ? "waiting…" : h("pre", { class: "result" }, ret.error ?? resultText(ret.result)),
          ret === null ? "—" : `${ret.durationMs} ms`,
        ];
      }),
    ));
  };

  const reload = reloader(async () => {
    const { job } = /** @type {{ job: JobRecord }} */ (await ctx.api.get(`/jobs/${enc(jid)}`));
    draw(job);
  }, (error) => (status.textContent = `Could not load job ${jid}: ${messageOf(error)}`));

  // Every event of the job's own log (acks, returns, finish) redraws from the record; the stream ends with the job.
  ctx.api.stream(`/jobs/${enc(jid)}/events`, () => reload(), stop.signal).catch(() => undefined);

  return {
    title: `Job ${jid}`,
    root,
    onEvent: (event) => event.type.startsWith("job.") && event.data.jid === jid && reload(),
    dispose: () => stop.abort(),
  };
}
