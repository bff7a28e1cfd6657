// @ts-check
/** The API token lives in this tab's sessionStorage only: never in a URL, gone when the tab closes. */

const KEY = "zectre.token";

/** @returns {string | null} */
export function savedToken() {
  return sessionStorage.getItem(KEY);
}

/** @param {string} token */
export function saveToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}
