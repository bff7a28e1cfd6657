// @ts-check
import { messageOf } from "../api.js";
import { badge, h, link, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").JobSummary} JobSummary */

const STATES = ["claimed", "running", "complete", "failed", "partial", "timeout", "canceled"];

/**
 * Jobs, newest first, filtered by state; a job's row changes as it finishes, without a reload.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const wanted = ctx.query.get("state") ?? "";
  const status = notice();
  const list = h("div");
  const select = h("select", { id: "state-filter", name: "state" },
    h("option", { value: "" }, "any state"),
    STATES.map((s) => h("option", { value: s, selected: s === wanted }, s)));
  // The filter lives in the address bar, so Back and a reload keep it.
  const apply = () => (location.hash = select.value === "" ? "#/jobs" : `#/jobs?state=${enc(select.value)}`);
  select.addEventListener("change", apply);
  const filter = h("form", { class: "inline-form", onsubmit: (event) => {
    event.preventDefault();
    apply();
  } }, h("label", { for: "state-filter" }, "State"), select, h("button", { type: "submit" }, "Filter"));
  const root = h("div", {}, h("h1", {}, "Jobs"), h("p", {}, h("a", { href: "#/run", class: "button" }, "Run a job")), filter, status, list);

  const reload = reloader(async () => {
    const { jobs } = /** @type {{ jobs: JobSummary[] }} */ (await ctx.api.get("/jobs?limit=200"));
    const shown = wanted === "" ? jobs : jobs.filter((j) => j.status === wanted);
    replace(list, table(
      ["Job", "Function", "Target", "State", "Returns", "By", "Started"],
      shown.map((j) => [
        link(`#/jobs/${enc(j.jid)}`, j.jid),
        j.function,
        h("code", {}, j.target),
        h("span", { "data-job-status": j.jid }, badge(j.status)),
        `${j.counts.returned}/${j.counts.targets}`,
        j.user,
        when(j.createdAt),
      ]),
      wanted === "" ? "No jobs yet." : `No ${wanted} jobs.`,
    ));
  }, (error) => (status.textContent = `Could not load jobs: ${messageOf(error)}`));

  return { title: "Jobs", root, onEvent: (event) => event.type.startsWith("job.") && reload() };
}
