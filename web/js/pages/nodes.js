// @ts-check
import { messageOf } from "../api.js";
import { badge, h, link, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").NodeSummary} NodeSummary */

/** @param {Record<string, string>} labels */
export function labelList(labels) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "—";
  return h("ul", { class: "labels" }, entries.map(([k, v]) => h("li", {}, `${k}=${v}`)));
}

/**
 * Nodes: every enrolled node with its presence, and the enrollment requests waiting for an admin.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const status = notice();
  const pending = h("section", { "aria-labelledby": "pending-title" });
  const list = h("section", { "aria-labelledby": "nodes-title" });
  const root = h("div", {}, h("h1", {}, "Nodes"), status, pending, list);

  /** @param {string} id @param {"approve" | "reject"} action */
  const decide = async (id, action) => {
    try {
      await ctx.api.post(`/nodes/${enc(id)}/${action}`);
      status.textContent = `${action === "approve" ? "Approved" : "Rejected"} ${id}.`;
      reload();
    } catch (error) {
      status.textContent = `Could not ${action} ${id}: ${messageOf(error)}`;
    }
  };

  /** @param {NodeSummary[]} nodes */
  const drawPending = (nodes) => {
    if (nodes.length === 0) return replace(pending);
    replace(pending, h("h2", { id: "pending-title" }, `Enrollment requests (${nodes.length})`), table(
      ["Node", "Hostname", "OS", "Requested", ""],
      nodes.map((n) => [n.id, n.hostname ?? "—", n.os ?? "—", when(n.enrolledAt), h("span", { class: "actions" },
        h("button", { type: "button", onclick: () => decide(n.id, "approve") }, "Approve"),
        h("button", { type: "button", class: "danger", onclick: () => decide(n.id, "reject") }, "Reject"))]),
    ));
  };

  /** @param {NodeSummary[]} nodes */
  const drawNodes = (nodes) => {
    const online = nodes.filter((n) => n.online).length;
    replace(list, h("h2", { id: "nodes-title" }, `Enrolled (${online} of ${nodes.length} online)`), table(
      ["Node", "Presence", "State", "OS / arch", "Labels", "Last seen"],
      nodes.map((n) => [
        link(`#/nodes/${enc(n.id)}`, n.id),
        h("span", { "data-node-presence": n.id }, badge(n.online ? "online" : "offline")),
        badge(n.state),
        `${n.os ?? "?"} / ${n.arch ?? "?"}`,
        labelList(n.labels),
        when(n.lastSeen),
      ]),
      "No nodes yet: enroll one with `zectre node token create` and `zectre-agent enroll`.",
    ));
  };

  const reload = reloader(async () => {
    const [enrolled, waiting] = await Promise.all([
      ctx.api.get("/nodes").then((b) => /** @type {{ nodes: NodeSummary[] }} */ (b).nodes),
      ctx.api.get("/nodes?state=pending").then((b) => /** @type {{ nodes: NodeSummary[] }} */ (b).nodes),
    ]);
    drawPending(waiting);
    drawNodes(enrolled);
  }, (error) => (status.textContent = `Could not load nodes: ${messageOf(error)}`));

  return { title: "Nodes", root, onEvent: (event) => event.type.startsWith("node.") && reload() };
}
