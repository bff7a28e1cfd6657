/**
 * The proxy's own answers: one line of JSON each, typed by `code`, and marked
 * with `x-zectre-proxy-error` so they are never mistaken for the app's.
 */

export const PROXY_ERROR_HEADER = "x-zectre-proxy-error";

export type PageCode = "not_found" | "unavailable" | "bad_gateway" | "timeout" | "bad_request" | "headers_too_large";

const STATUS: Record<PageCode, number> = {
  not_found: 404,
  unavailable: 503,
  bad_gateway: 502,
  timeout: 504,
  bad_request: 400,
  headers_too_large: 431,
};

export function page(code: PageCode, message: string, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify({ error: { code, message } })}\n`, {
    status: STATUS[code],
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", [PROXY_ERROR_HEADER]: code, ...headers },
  });
}
