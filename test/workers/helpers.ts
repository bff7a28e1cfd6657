import { env, exports } from "cloudflare:workers";

export const OPERATOR = "test-operator-secret";

export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

export async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = body;
  const res = await exports.default.fetch(new Request(`http://api.test${path}`, init));
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

let orgCounter = 0;

/** A fresh org per call, so tests never share tokens. */
export async function createOrg(prefix = "org"): Promise<{ name: string; adminToken: string }> {
  const name = `${prefix}-${Date.now().toString(36)}-${orgCounter++}`;
  const res = await call<{ admin: { token: string } }>("POST", "/api/v1/orgs", { token: OPERATOR, body: { name } });
  if (res.status !== 201) throw new Error(`creating org failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { name, adminToken: res.body.admin.token };
}

export async function createToken(adminToken: string, name: string, scope: string): Promise<string> {
  const res = await call<{ token: string }>("POST", "/api/v1/tokens", { token: adminToken, body: { name, scope } });
  if (res.status !== 201) throw new Error(`creating token failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token;
}

export { env };
