import { MAX_HEADERS } from "../../protocol/tunnel.ts";
import { page } from "./pages.ts";

/**
 * Requests that could be framed two ways (request smuggling) or that flood
 * headers never reach an app. workerd's HTTP parser already refuses some of
 * these before the Worker runs; this covers whatever gets through (the Headers
 * object joins repeated fields with ", ", so a repeated Content-Length shows as a list).
 */
export function refusal(request: Request): Response | null {
  const length = request.headers.get("content-length");
  if (length !== null && request.headers.has("transfer-encoding")) {
    return page("bad_request", "a request may not carry both Content-Length and Transfer-Encoding");
  }
  if (length !== null && !/^\d{1,15}$/.test(length.trim())) {
    return page("bad_request", "Content-Length must be one decimal number (repeated or malformed here)");
  }
  if ([...request.headers.keys()].length > MAX_HEADERS) return page("headers_too_large", `a request may carry at most ${MAX_HEADERS} header fields`);
  return null;
}
