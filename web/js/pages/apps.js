// @ts-check
import { messageOf } from "../api.js";
import { h, link, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").AppSummary} AppSummary */

/**
 * Apps: each with its promoted and latest deployment.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const status = notice();
  const list = h("div");
  const reload = reloader(async () => {
    const { apps } = /** @type {{ apps: AppSummary[] }} */ (await ctx.api.get("/apps"));
    replace(list, table(
      ["App", "Promoted", "Latest", "Created"],
      apps.map((a) => [link(`#/apps/${enc(a.name)}`, a.name), a.promoted ?? "—", a.latest ?? "—", when(a.createdAt)]),
      "No apps yet: `zectre deploy ./dir` creates one.",
    ));
  }, (error) => (status.textContent = `Could not load apps: ${messageOf(error)}`));
  return { title: "Apps", root: h("div", {}, h("h1", {}, "Apps"), status, list), onEvent: (event) => event.type.startsWith("deploy") && reload() };
}
