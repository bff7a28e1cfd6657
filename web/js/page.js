// @ts-check
/**
 * What every page module exports: `render(ctx)` returning its root element, an optional handler for the org's
 * live events, and an optional dispose for streams it opened.
 * @typedef {import("./api.js").Api} Api
 * @typedef {import("./events.js").OrgEvent} OrgEvent
 * @typedef {import("./types.js").Identity} Identity
 * @typedef {{ api: Api, identity: Identity, params: Record<string, string>, query: URLSearchParams }} PageContext
 * @typedef {{ title: string, root: HTMLElement, onEvent?: (event: OrgEvent) => void, dispose?: () => void }} Page
 */

/**
 * Runs `load` now and again (coalesced) whenever `poke` is called, so a burst of live events costs one reload.
 * Errors go to `onError` rather than leaving a half-drawn page.
 * @param {() => Promise<void>} load
 * @param {(error: unknown) => void} onError
 * @returns {() => void} poke
 */
export function reloader(load, onError) {
  let running = false;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await load().catch(onError);
      } while (again);
    } finally {
      running = false;
    }
  };
  void run();
  return () => void run();
}

/** @param {string} part */
export function enc(part) {
  return encodeURIComponent(part);
}
