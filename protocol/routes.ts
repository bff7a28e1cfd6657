/**
 * Public hostnames of apps and deployments, one DNS label per part so every label
 * stays under 63 characters and parsing is unambiguous:
 * the app URL is `<app>.<org>.<domain>`, a deployment's preview `<deployment>.<app>.<org>.<domain>`.
 * Locally the domain is `localhost:47000` (browsers and curl resolve `*.localhost` to loopback).
 */

export type RouteTarget = { kind: "app"; org: string; app: string } | { kind: "preview"; org: string; app: string; deploymentId: string };

/** `base` is the proxy's public URL, e.g. `http://localhost:47000` or `https://zectre.example.com`. */
export function appUrl(base: string, org: string, app: string): string {
  return withLabels(base, [app, org]);
}

export function previewUrl(base: string, org: string, app: string, deploymentId: string): string {
  return withLabels(base, [deploymentId, app, org]);
}

function withLabels(base: string, labels: readonly string[]): string {
  const url = new URL(base);
  url.hostname = `${labels.join(".")}.${url.hostname}`;
  return url.origin;
}

/** The route a request's Host names under `domain` (hostname only, no port), or null. */
export function parseRouteHost(host: string, domain: string): RouteTarget | null {
  const hostname = host.toLowerCase().replace(/:\d+$/, "");
  const suffix = `.${domain.toLowerCase()}`;
  if (!hostname.endsWith(suffix)) return null;
  const labels = hostname.slice(0, -suffix.length).split(".");
  if (labels.length === 2) return { kind: "app", app: labels[0] as string, org: labels[1] as string };
  if (labels.length === 3) return { kind: "preview", deploymentId: labels[0] as string, app: labels[1] as string, org: labels[2] as string };
  return null;
}
