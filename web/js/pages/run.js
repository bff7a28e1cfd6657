// @ts-check
import { messageOf } from "../api.js";
import { jobArgs } from "../args.js";
import { badge, h, notice, replace } from "../dom.js";
import { enc } from "../page.js";

/** @typedef {import("../types.js").NodeSummary} NodeSummary */

const FUNCTIONS = ["test.ping", "test.echo", "test.sleep", "cmd.run", "facts.items", "facts.get", "file.stat", "file.read", "state.apply", "sys.list_functions"];
const PREVIEW_DELAY_MS = 250;

/**
 * Run a job: target, function and arguments, with a live preview of the nodes the target matches now.
 * @param {import("../page.js").PageContext} ctx
 * @returns {import("../page.js").Page}
 */
export function render(ctx) {
  const status = notice();
  const preview = h("div", { id: "target-preview", "aria-live": "polite" });
  const target = h("input", { id: "run-target", name: "target", required: true, autocomplete: "off", placeholder: "web* and G@os:linux", value: ctx.query.get("target") ?? "*" });
  const fn = h("input", { id: "run-function", name: "function", required: true, autocomplete: "off", list: "functions", value: "test.ping" });
  const args = h("input", { id: "run-args", name: "args", autocomplete: "off", placeholder: "key=value or words, e.g. \"uptime\"" });
  const timeout = h("input", { id: "run-timeout", name: "timeout", type: "number", min: 1, max: 86400, value: 60 });
  const submit = h("button", { type: "submit" }, "Run");

  let previewTimer = /** @type {ReturnType<typeof setTimeout> | undefined} */ (undefined);
  let previewSeq = 0;
  const showPreview = async () => {
    const expr = target.value.trim();
    const seq = ++previewSeq;
    if (expr === "") return replace(preview, "Type a target to see the nodes it matches.");
    try {
      const { nodes } = /** @type {{ nodes: NodeSummary[] }} */ (await ctx.api.get(`/nodes?target=${enc(expr)}`));
      if (seq !== previewSeq) return;
      replace(preview, h("p", {}, `Matches ${nodes.length} node${nodes.length === 1 ? "" : "s"}:`),
        h("ul", { class: "matched" }, nodes.map((n) => h("li", {}, n.id, " ", badge(n.online ? "online" : "offline")))));
    } catch (error) {
      if (seq === previewSeq) replace(preview, h("p", { class: "error" }, `Target not valid: ${messageOf(error)}`));
    }
  };
  target.addEventListener("input", () => {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(showPreview, PREVIEW_DELAY_MS);
  });

  /** @param {SubmitEvent} event */
  const run = async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const body = { target: target.value.trim(), function: fn.value.trim(), args: jobArgs(fn.value.trim(), args.value), timeout: Number(timeout.value) || 60 };
      const created = /** @type {{ jid: string }} */ (await ctx.api.post("/jobs", body));
      location.hash = `#/jobs/${enc(created.jid)}`;
    } catch (error) {
      status.textContent = `Could not run the job: ${messageOf(error)}`;
    } finally {
      submit.disabled = false;
    }
  };

  const form = h("form", { class: "stack-form", onsubmit: (event) => void run(/** @type {SubmitEvent} */ (event)) },
    h("label", { for: "run-target" }, "Target"), target,
    h("label", { for: "run-function" }, "Function"), fn,
    h("datalist", { id: "functions" }, FUNCTIONS.map((f) => h("option", { value: f }))),
    h("label", { for: "run-args" }, "Arguments"), args,
    h("label", { for: "run-timeout" }, "Timeout (seconds)"), timeout,
    submit);
  void showPreview();
  return {
    title: "Run a job",
    root: h("div", {}, h("h1", {}, "Run a job"), status, form, h("h2", {}, "Matched nodes"), preview),
    onEvent: (event) => event.type.startsWith("node.") && void showPreview(),
    dispose: () => clearTimeout(previewTimer),
  };
}
