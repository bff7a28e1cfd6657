import { z } from "zod";

/** Custom host names an app answers at, besides its `<app>.<org>.<domain>` URL (`zectre route add APP HOST`). */

/** Lowercase DNS labels, at least two, no trailing dot, no port. */
const HOST_NAME_PATTERN = /^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

export const MAX_ROUTES_PER_APP = 20;

export const HostName = z
  .string()
  .transform((host) => host.toLowerCase())
  .pipe(z.string().regex(HOST_NAME_PATTERN, "a host name is lowercase DNS labels separated by dots, like www.example.com (no scheme, port or path)"));

export const AddRouteBody = z.object({ host: HostName }).strict();

export interface HostRoute {
  host: string;
  org: string;
  app: string;
  createdAt: string;
  createdBy: string;
}

/**
 * Why a host may not be a custom route, or null: names under the proxy's own
 * domain are parsed (`<app>.<org>.<domain>`), so a route there could shadow
 * another tenant's app; the API's own host name is not an app's either.
 */
export function reservedHostProblem(host: string, proxyDomain: string, apiHost: string): string | null {
  const domain = proxyDomain.toLowerCase();
  if (host === domain || host.endsWith(`.${domain}`)) return `host names under ${domain} are the proxy's own app and preview URLs`;
  if (host === apiHost.toLowerCase()) return `${host} is the API's host name`;
  return null;
}
