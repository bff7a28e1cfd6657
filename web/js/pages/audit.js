// @ts-check
import { messageOf } from "../api.js";
import { h, notice, replace, table, when } from "../dom.js";
import { reloader } from "../page.js";

/** @typedef {import("../types.js").AuditEntry} AuditEntry */

/**
 * The org's audit log: every change made through the API, newest first.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const status = notice();
  const list = h("div");
  const reload = reloader(async () => {
    const { entries } = /** @type {{ entries: AuditEntry[] }} */ (await ctx.api.get("/audit?limit=200"));
    replace(list, table(
      ["When", "Who", "Token", "Action", "Target", "Status", "From", "Request"],
      [...entries].sort((a, b) => b.id - a.id).map((e) => [when(e.at), e.actor, e.tokenName ?? "—", h("code", {}, e.action), e.target, e.status ?? "—", e.ip ?? "—", e.requestId ? h("code", {}, e.requestId) : "—"]),
      "No changes recorded yet.",
    ));
  }, (error) => (status.textContent = `Could not load the audit log: ${messageOf(error)}`));
  return { title: "Audit log", root: h("div", {}, h("h1", {}, "Audit log"), status, list), onEvent: () => reload() };
}
