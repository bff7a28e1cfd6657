// @ts-check
import { messageOf } from "../api.js";
import { badge, h, notice, replace, table, when } from "../dom.js";
import { enc, reloader } from "../page.js";

/** @typedef {import("../types.js").NodeDetail} NodeDetail */

/**
 * Flattens facts to dotted keys, the way targets name them (`G@os.release:12`).
 * @param {unknown} value
 * @param {string} prefix
 * @param {[string, string][]} out
 * @returns {[string, string][]}
 */
export function flatten(value, prefix = "", out = []) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix === "" ? key : `${prefix}.${key}`, out);
  } else {
    out.push([prefix, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  return out;
}

/**
 * One node: presence, labels (editable) and every fact.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const id = ctx.params.id ?? "";
  const status = notice();
  const summary = h("div");
  const labels = h("section", { "aria-labelledby": "labels-title" });
  const facts = h("section", { "aria-labelledby": "facts-title" });
  const root = h("div", {}, h("p", {}, h("a", { href: "#/nodes" }, "← Nodes")), h("h1", {}, `Node ${id}`), status, summary, labels, facts);

  /** @param {Record<string, string | null>} change */
  const setLabels = async (change) => {
    try {
      await ctx.api.request("PATCH", `/nodes/${enc(id)}/labels`, { labels: change });
      status.textContent = "Labels saved.";
      reload();
    } catch (error) {
      status.textContent = `Could not change labels: ${messageOf(error)}`;
    }
  };

  /** @param {NodeDetail} node */
  const drawLabels = (node) => {
    const key = h("input", { id: "label-key", name: "key", required: true, autocomplete: "off" });
    const value = h("input", { id: "label-value", name: "value", autocomplete: "off" });
    const form = h("form", { class: "inline-form", onsubmit: (event) => {
      event.preventDefault();
      void setLabels({ [key.value.trim()]: value.value });
    } }, h("label", { for: "label-key" }, "Key"), key, h("label", { for: "label-value" }, "Value"), value, h("button", { type: "submit" }, "Set label"));
    replace(labels, h("h2", { id: "labels-title" }, "Labels"), table(
      ["Key", "Value", ""],
      Object.entries(node.labels).map(([k, v]) => [k, v, h("button", { type: "button", class: "danger", "aria-label": `Remove label ${k}`, onclick: () => setLabels({ [k]: null }) }, "Remove")]),
      "No labels.",
    ), form);
  };

  /** @param {NodeDetail} node */
  const draw = (node) => {
    replace(summary, h("dl", { class: "facts-summary" },
      h("dt", {}, "Presence"), h("dd", { "data-node-presence": node.id }, badge(node.online ? "online" : "offline")),
      h("dt", {}, "State"), h("dd", {}, badge(node.state)),
      h("dt", {}, "Hostname"), h("dd", {}, node.hostname ?? "—"),
      h("dt", {}, "OS / arch"), h("dd", {}, `${node.os ?? "?"} / ${node.arch ?? "?"}`),
      h("dt", {}, "Agent"), h("dd", {}, node.agentVersion ?? "—"),
      h("dt", {}, "Connected"), h("dd", {}, when(node.connectedAt)),
      h("dt", {}, "Last seen"), h("dd", {}, when(node.lastSeen))));
    drawLabels(node);
    replace(facts, h("h2", { id: "facts-title" }, "Facts"), table(["Fact", "Value"], flatten(node.facts ?? {}), "No facts reported yet."));
  };

  const reload = reloader(async () => {
    const body = /** @type {{ node: NodeDetail }} */ (await ctx.api.get(`/nodes/${enc(id)}`));
    draw(body.node);
  }, (error) => (status.textContent = `Could not load node ${id}: ${messageOf(error)}`));

  return {
    title: `Node ${id}`,
    root,
    onEvent: (event) => event.type.startsWith("node.") && (event.data.nodeId === undefined || event.data.nodeId === id) && reload(),
  };
}
