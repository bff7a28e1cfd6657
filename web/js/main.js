// @ts-check
import { Api, ApiFailure, messageOf, whoami } from "./api.js";
import { h, replace } from "./dom.js";
import { EventsSocket } from "./events.js";
import { renderSignIn } from "./pages/signin.js";
import { resolve } from "./router.js";
import { forgetToken, saveToken, savedToken } from "./session.js";

/** @typedef {import("./page.js").Page} Page */
/** @typedef {import("./types.js").Identity} Identity */

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const liveState = /** @type {HTMLElement} */ (document.getElementById("live-state"));

/** @type {{ api: Api, identity: Identity, socket: EventsSocket, page: Page | null } | null} */
let session = null;

/** @param {string} message */
function signOut(message) {
  session?.socket.stop();
  session?.page?.dispose?.();
  session = null;
  forgetToken();
  nav.hidden = true;
  liveState.textContent = "";
  document.title = "Sign in · Zectre";
  replace(main, renderSignIn(message, signedIn));
  document.getElementById("token")?.focus();
}

/**
 * @param {string} token
 * @param {Identity} identity
 */
function signedIn(token, identity) {
  saveToken(token);
  const api = new Api(token, () => signOut("The control plane no longer accepts this token (401). Sign in again."));
  const socket = new EventsSocket(token, {
    onEvent: (event) => session?.page?.onEvent?.(event),
    onState: (state) => (liveState.textContent = state === "live" ? "live" : state === "connecting" ? "connecting…" : "live updates reconnecting…"),
    onBadToken: (code) => signOut(code === 4003
      ? "This token may not read the org's events (it needs the read scope). Sign in with another."
      : "The control plane no longer accepts this token (the event stream closed with 4001). Sign in again."),
  });
  session = { api, identity, socket, page: null };
  nav.hidden = false;
  const who = document.getElementById("who");
  if (who) who.textContent = `${identity.tokenName} @ ${identity.org} (${identity.scope})`;
  socket.start();
  void show();
}

/** @param {boolean} [moveFocus] after a route change, so keyboard and screen-reader users start at the new page */
async function show(moveFocus = false) {
  if (!session) return;
  const current = session;
  // In-page anchors such as the skip link are not routes: the page stays.
  if (location.hash !== "" && !location.hash.startsWith("#/") && current.page) return;
  current.page?.dispose?.();
  current.page = null;
  const found = resolve(location.hash.startsWith("#/") ? location.hash : "#/nodes");
  if (!found) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "No page here. "), h("a", { href: "#/nodes" }, "Go to nodes"));
    return;
  }
  const module = await found.route.load();
  if (session !== current) return;
  const page = module.render({ api: current.api, identity: current.identity, params: found.params, query: found.query });
  current.page = page;
  document.title = `${page.title} · Zectre`;
  replace(main, page.root);
  markCurrentNav();
  if (moveFocus) main.focus();
}

function markCurrentNav() {
  const section = (location.hash.split("/")[1] ?? "nodes").split("?")[0];
  for (const a of nav.querySelectorAll("a[data-section]")) {
    if (a.getAttribute("data-section") === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function boot() {
  document.getElementById("sign-out")?.addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => void show(true));
  const token = savedToken();
  if (token === null) return signOut("");
  try {
    signedIn(token, await whoami(token));
  } catch (error) {
    signOut(error instanceof ApiFailure && error.status === 401
      ? "The saved token is no longer accepted. Sign in again."
      : `Could not reach the control plane: ${messageOf(error)}`);
  }
}

void boot();
