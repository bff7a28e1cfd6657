import { z } from "zod";

/**
 * Direct nodes: an admin may give a node an address the edge proxy can reach,
 * and the proxy then fetches that node's tasks at `http://<address>:<host port>`
 * itself instead of through the agent's tunnel. The address is a bare host name
 * or IP literal: no scheme, no port (each task has its own), no path.
 */

const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DOTTED_QUAD = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** What URL parsers read as a number (so `10.1` or `0x7f000001` would silently become an IPv4 address). */
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/;
const MAX_HOST_NAME = 253;

export type ParsedDirectAddress = { ok: true; address: string } | { ok: false; problem: string };

const refused = (problem: string): ParsedDirectAddress => ({ ok: false, problem });

/**
 * The address in the one form it is stored and used in (host names in lower case,
 * IPv6 compressed and without brackets), or why it cannot be one. Addresses a host
 * never serves from (unspecified, link-local, multicast, broadcast) are refused:
 * link-local is where cloud metadata services answer.
 */
export function parseDirectAddress(input: string): ParsedDirectAddress {
  const text = input.trim().toLowerCase();
  if (text === "") return refused("give a host name or an IP address");
  if (/[/?#@\s]/.test(text) || text.includes("://")) return refused("give only a host name or an IP address: no scheme, path or spaces");
  if (/^[^:]*:\d*$/.test(text) || /^\[.*\]:\d*$/.test(text)) return refused("give no port: each task has its own, and the proxy uses it");
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (bare.includes(":")) return parseIpv6(bare);
  if (DOTTED_QUAD.test(bare)) return checkIpv4(bare);
  return parseHostName(bare);
}

function parseHostName(name: string): ParsedDirectAddress {
  if (name.length > MAX_HOST_NAME) return refused(`a host name is at most ${MAX_HOST_NAME} characters`);
  const labels = name.split(".");
  if (!labels.every((label) => HOST_LABEL.test(label))) {
    return refused("a host name is dot-separated labels of letters, digits and '-'");
  }
  if (NUMERIC_LABEL.test(labels.at(-1) as string)) return refused(`'${name}' is not a valid IPv4 address (write four decimal numbers, 0-255)`);
  return { ok: true, address: name };
}

function checkIpv4(address: string): ParsedDirectAddress {
  const [a, b] = address.split(".").map(Number) as [number, number];
  if (address === "0.0.0.0") return refused("0.0.0.0 is no one's address; give the node's own");
  if (a === 169 && b === 254) return refused("link-local addresses (169.254.0.0/16) are refused");
  if (a >= 224) return refused("multicast and reserved addresses (224.0.0.0 and up) are refused");
  return { ok: true, address };
}

function parseIpv6(address: string): ParsedDirectAddress {
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return refused(`'${address}' is not a valid IPv6 address`);
  }
  if (canonical === "::") return refused(":: is no one's address; give the node's own");
  if (canonical.startsWith("::ffff:")) return refused("write an IPv4-mapped address as the IPv4 address itself");
  if (/^fe[89ab]/.test(canonical)) return refused("link-local addresses (fe80::/10) are refused");
  if (canonical.startsWith("ff")) return refused("multicast addresses (ff00::/8) are refused");
  return { ok: true, address: canonical };
}

/** An address as the API accepts it: parsed to its stored form, or a 400 saying what is wrong. */
export const DirectAddress = z
  .string()
  .max(MAX_HOST_NAME + 2)
  .transform((value, ctx) => {
    const parsed = parseDirectAddress(value);
    if (parsed.ok) return parsed.address;
    ctx.addIssue({ code: "custom", message: parsed.problem });
    return z.NEVER;
  });

/** `PUT /api/v1/nodes/:id/direct`: an address marks the node direct; null goes back to the tunnel. */
export const SetDirectBody = z.object({ address: DirectAddress.nullable() }).strict();
export type SetDirectBody = z.input<typeof SetDirectBody>;

/**
 * The URL the proxy fetches for one task on a direct node, or null when the
 * pieces could not make a URL naming exactly that host and port (a stored address
 * that no longer parses, a path that would not stay a path). The path is only ever
 * appended after the port, so nothing from the request can change where it goes.
 */
export function directTaskUrl(address: string, port: number, pathAndQuery: string): string | null {
  const parsed = parseDirectAddress(address);
  if (!parsed.ok || parsed.address !== address) return null;
  if (!Number.isInteger(port) || port < 1 || port > 65535 || !pathAndQuery.startsWith("/")) return null;
  const host = address.includes(":") ? `[${address}]` : address;
  const url = `http://${host}:${port}${pathAndQuery}`;
  let check: URL;
  try {
    check = new URL(url);
  } catch {
    return null;
  }
  return check.hostname === host && (check.port || "80") === String(port) ? url : null;
}
