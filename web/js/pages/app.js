// @ts-check
import { messageOf } from "../api.js";
import { badge, h, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").AppSummary} AppSummary */
/** @typedef {import("../types.js").DeploymentRecord} DeploymentRecord */
/** @typedef {import("../types.js").DeploymentView} DeploymentView */

/** Deployments shown with their tasks and preview links; older ones are in `zectre deployments`. */
const SHOWN = 10;

/** @param {DeploymentRecord} d */
function tasksOf(d) {
  const running = d.tasks.filter((t) => t.desired === "run");
  if (running.length === 0) return "none";
  return h("ul", { class: "tasks" }, running.map((t) => h("li", {}, badge(t.state), ` ${t.taskId} on ${t.nodeId}`, t.restarts > 0 ? ` (${t.restarts} restarts)` : "", t.message ? ` — ${t.message}` : "")));
}

/**
 * One app: its deployments (state, tasks, preview link), promote and rollback, and each deployment's logs.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const name = ctx.params.app ?? "";
  const status = notice();
  const head = h("div");
  const list = h("section", { "aria-labelledby": "deployments-title" });
  const root = h("div", {}, h("p", {}, h("a", { href: "#/apps" }, "← Apps")), h("h1", {}, `App ${name}`), status, head, list);
  const stop = new AbortController();

  /** @param {string} what @param {() => Promise<unknown>} action */
  const act = async (what, action) => {
    try {
      await action();
      status.textContent = `${what}: requested.`;
      reload();
    } catch (error) {
      status.textContent = `${what} failed: ${messageOf(error)}`;
    }
  };
  const promote = (/** @type {string} */ id) => act(`Promote ${id}`, () => ctx.api.post(`/deployments/${enc(id)}/promote`));
  const rollback = () => act("Rollback", () => ctx.api.post(`/apps/${enc(name)}/rollback`));

  /** @param {AppSummary} app @param {DeploymentView[]} views */
  const draw = (app, views) => {
    const appUrl = views[0]?.appUrl;
    replace(head, h("dl", { class: "facts-summary" },
      h("dt", {}, "Promoted"), h("dd", {}, app.promoted ?? "—"),
      h("dt", {}, "App URL"), h("dd", {}, appUrl ? h("a", { href: appUrl, target: "_blank", rel: "noopener noreferrer" }, appUrl) : "—")),
      h("button", { type: "button", onclick: rollback }, "Roll back to the previous promotion"));
    replace(list, h("h2", { id: "deployments-title" }, "Deployments"), table(
      ["Deployment", "State", "Tasks", "Preview", "Created", ""],
      views.map(({ deployment: d, previewUrl }) => [
        h("span", {}, d.id, d.promoted ? " " : "", d.promoted ? badge("promoted") : ""),
        badge(d.status),
        tasksOf(d),
        h("a", { href: previewUrl, target: "_blank", rel: "noopener noreferrer", "data-preview": d.id, "aria-label": `Preview of ${d.id} (opens a new tab)` }, "preview"),
        when(d.createdAt),
        h("span", { class: "actions" },
          d.promoted ? null : h("button", { type: "button", onclick: () => promote(d.id) }, "Promote"),
          h("a", { href: `#/apps/${enc(name)}/deployments/${enc(d.id)}/logs`, class: "button" }, "Logs")),
      ]),
      "No deployments yet.",
    ));
  };

  const reload = reloader(async () => {
    const body = /** @type {{ app: AppSummary, deployments: DeploymentRecord[] }} */ (await ctx.api.get(`/apps/${enc(name)}`));
    // The preview URL is the server's to form (its public proxy base), so each shown deployment is read once.
    const views = await Promise.all(body.deployments.slice(0, SHOWN).map((d) => /** @type {Promise<DeploymentView>} */ (ctx.api.get(`/deployments/${enc(d.id)}`))));
    draw(body.app, views);
  }, (error) => (status.textContent = `Could not load app ${name}: ${messageOf(error)}`));

  // The app's own event stream carries every task state change; the org stream carries deploy.* too.
  ctx.api.stream(`/apps/${enc(name)}/events?since=${Number.MAX_SAFE_INTEGER}`, () => reload(), stop.signal).catch(() => undefined);

  return {
    title: `App ${name}`,
    root,
    onEvent: (event) => (event.type.startsWith("deploy") || event.type.startsWith("task.")) && reload(),
    dispose: () => stop.abort(),
  };
}
