import { request } from "node:http";

export interface LoopbackResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * GET a `*.localhost` URL the way a browser would: Node's resolver does not map
 * subdomains of localhost to loopback, so connect to 127.0.0.1 and keep the Host.
 */
export function getViaLoopback(url: string): Promise<LoopbackResponse> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: target.port, path: `${target.pathname}${target.search}`, headers: { host: target.host } },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}
