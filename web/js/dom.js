// @ts-check
/**
 * The one way the dashboard builds DOM. Text goes in through textContent only, so a fact value, a
 * label or a log line holding HTML is shown as text; there is no innerHTML anywhere.
 */

/** @typedef {string | number | Node | null | undefined | false} Child */
/** @typedef {Record<string, string | number | boolean | ((event: Event) => void) | undefined>} Attrs */

/**
 * h("button", { type: "button", onclick: fn }, "Kill"): strings and numbers become text nodes;
 * `on*` attributes become listeners; `false`/`undefined` attributes are left out.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} parent
 * @param {(Child | Child[])[]} children
 */
export function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

/**
 * Replaces an element's content.
 * @param {Element} el
 * @param {...(Child | Child[])} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * A table with a header row; rows are arrays of cells. Each cell carries its column name so a phone-width
 * layout can show rows as labelled cards.
 * @param {string[]} headers
 * @param {Child[][]} rows
 * @param {string} [empty] shown in one cell when there are no rows
 */
export function table(headers, rows, empty = "Nothing here yet.") {
  const body = rows.length === 0
    ? [h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, empty))]
    : rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { "data-label": headers[i] ?? "" }, cell))));
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, body)));
}

/**
 * A small coloured word for a state (online, healthy, failed...): the class is from a fixed list, the text as given.
 * @param {string} text
 */
export function badge(text) {
  const tone = /^(online|healthy|complete|active|approved|running|succeeded|ok|live)$/.test(text)
    ? "good"
    : /^(offline|failed|crashed|unhealthy|timeout|canceled|rejected|revoked|lost|unreachable|error|degraded|partial)$/.test(text)
      ? "bad"
      : "neutral";
  return h("span", { class: `badge ${tone}` }, text);
}

/** @param {string} href @param {string} text */
export function link(href, text) {
  return h("a", { href }, text);
}

/** @param {string | null | undefined} iso */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/**
 * A one-line status area read out by screen readers; errors show in it instead of a blank page.
 * @param {string} [text]
 */
export function notice(text = "") {
  return h("p", { class: "notice", role: "status", "aria-live": "polite" }, text);
}
