// @ts-check
import { ApiFailure, messageOf, whoami } from "../api.js";
import { h } from "../dom.js";

/**
 * The sign-in form. A token is checked against the API before it is kept; a wrong one gets a message that says so.
 * @param {string} message shown above the form (why the user is here again), or ""
 * @param {(token: string, identity: import("../types.js").Identity) => void} onSignedIn
 */
export function renderSignIn(message, onSignedIn) {
  const error = h("p", { id: "signin-error", class: "error", role: "alert" }, message);
  const input = h("input", { id: "token", name: "token", type: "password", required: true, autocomplete: "off", spellcheck: "false", placeholder: "zt_…", "aria-describedby": "signin-error signin-help" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "stack-form", onsubmit: async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    submit.disabled = true;
    error.textContent = "";
    try {
      onSignedIn(token, await whoami(token));
    } catch (failure) {
      error.textContent = failure instanceof ApiFailure && failure.status === 401
        ? `That token was not accepted: ${failure.message}. Check it, or create one with \`zectre token create\`.`
        : `Could not reach the control plane: ${messageOf(failure)}`;
      input.focus();
    } finally {
      submit.disabled = false;
    }
  } },
  h("label", { for: "token" }, "API token"), input,
  h("p", { id: "signin-help", class: "help" }, "Kept in this tab's session storage only, and sent as a header; closing the tab forgets it."),
  submit);
  return h("section", { class: "signin", "aria-labelledby": "signin-title" }, h("h1", { id: "signin-title" }, "Sign in to Zectre"), error, form);
}
