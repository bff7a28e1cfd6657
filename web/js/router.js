// @ts-check
/**
 * Hash routes (`#/jobs/123`), so the static asset server needs no fallback and a reload keeps the page.
 * @typedef {import("./page.js").PageContext} PageContext
 * @typedef {import("./page.js").Page} Page
 * @typedef {{ pattern: RegExp, names: string[], load: () => Promise<{ render: (ctx: PageContext) => Page }> }} Route
 */

/**
 * @param {string} path like "/jobs/:jid"
 * @param {Route["load"]} load
 * @returns {Route}
 */
function route(path, load) {
  /** @type {string[]} */
  const names = [];
  const source = path.replace(/:([a-z]+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  return { pattern: new RegExp(`^${source}$`), names, load };
}

const ROUTES = [
  route("/nodes", () => import("./pages/nodes.js")),
  route("/nodes/:id", () => import("./pages/node.js")),
  route("/jobs", () => import("./pages/jobs.js")),
  route("/jobs/:jid", () => import("./pages/job.js")),
  route("/run", () => import("./pages/run.js")),
  route("/apps", () => import("./pages/apps.js")),
  route("/apps/:app", () => import("./pages/app.js")),
  route("/apps/:app/deployments/:id/logs", () => import("./pages/logs.js")),
  route("/audit", () => import("./pages/audit.js")),
];

/**
 * @param {string} hash
 * @returns {{ route: Route, params: Record<string, string>, query: URLSearchParams } | null}
 */
export function resolve(hash) {
  const raw = hash.replace(/^#/, "") || "/nodes";
  const [path = "/nodes", search = ""] = raw.split("?", 2);
  for (const candidate of ROUTES) {
    const match = candidate.pattern.exec(path);
    if (!match) continue;
    /** @type {Record<string, string>} */
    const params = {};
    candidate.names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1] ?? "")));
    return { route: candidate, params, query: new URLSearchParams(search) };
  }
  return null;
}
