// @ts-check
/** The dashboard's HTTP client: same-origin `/api/v1`, the token as a Bearer header, errors as ApiFailure. */

/** Thrown for any answer that is not 2xx, with the API's own code and message when it sent one. */
export class ApiFailure extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {Response} res
 * @returns {Promise<ApiFailure>}
 */
async function failureOf(res) {
  const text = await res.text().catch(() => "");
  try {
    const body = /** @type {{ error?: { code?: unknown, message?: unknown } }} */ (JSON.parse(text));
    const code = typeof body.error?.code === "string" ? body.error.code : `http_${res.status}`;
    const message = typeof body.error?.message === "string" ? body.error.message : `${res.status} ${res.statusText}`;
    return new ApiFailure(res.status, code, message);
  } catch {
    return new ApiFailure(res.status, `http_${res.status}`, `${res.status} ${res.statusText}`);
  }
}

export class Api {
  /**
   * @param {string} token
   * @param {(failure: ApiFailure) => void} onUnauthorized called on any 401, so the app can return to sign-in
   */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  /**
   * @template T
   * @param {string} method
   * @param {string} path below /api/v1, e.g. "/nodes"
   * @param {unknown} [body]
   * @returns {Promise<T>}
   */
  async request(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${this.token}` };
    /** @type {RequestInit} */
    const init = { method, headers };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(`/api/v1${path}`, init);
    if (!res.ok) throw await this.failed(res);
    return /** @type {T} */ (await res.json());
  }

  /**
   * @template T
   * @param {string} path
   * @returns {Promise<T>}
   */
  get(path) {
    return this.request("GET", path);
  }

  /**
   * @template T
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<T>}
   */
  post(path, body) {
    return this.request("POST", path, body);
  }

  /**
   * Follows a server-sent event stream with fetch (EventSource cannot send the token in a header), calling
   * `onData` with each event's parsed `data:`, until the stream ends or `signal` aborts.
   * @param {string} path
   * @param {(data: unknown, id: string | null) => void} onData
   * @param {AbortSignal} signal
   */
  async stream(path, onData, signal) {
    const res = await fetch(`/api/v1${path}`, { headers: { authorization: `Bearer ${this.token}`, accept: "text/event-stream" }, signal });
    if (!res.ok || !res.body) throw await this.failed(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n\n")) !== -1) {
        const frame = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        dispatchFrame(frame, onData);
      }
    }
  }

  /** @param {Response} res */
  async failed(res) {
    const failure = await failureOf(res);
    if (failure.status === 401) this.onUnauthorized(failure);
    return failure;
  }
}

/**
 * @param {string} frame
 * @param {(data: unknown, id: string | null) => void} onData
 */
function dispatchFrame(frame, onData) {
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("id:")) id = line.slice(3).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0) return;
  try {
    onData(JSON.parse(data.join("\n")), id);
  } catch {
    // A frame that is not JSON is not ours to show.
  }
}

/**
 * Checks a token before it is kept: the identity it stands for, or an ApiFailure.
 * @param {string} token
 * @returns {Promise<{ org: string, tokenName: string, scope: string }>}
 */
export async function whoami(token) {
  const res = await fetch("/api/v1/whoami", { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw await failureOf(res);
  const body = /** @type {{ identity: { org: string, tokenName: string, scope: string } }} */ (await res.json());
  return body.identity;
}

/** @param {unknown} error */
export function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
