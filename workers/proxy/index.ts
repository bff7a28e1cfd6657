import type { OrgObject } from "../../durable-objects/OrgObject.ts";
import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";

export interface ProxyEnv {
  ORG: DurableObjectNamespace<OrgObject>;
  /** Preview and app host names sit under this domain (locally `localhost`). */
  PREVIEW_DOMAIN: string;
}

/**
 * The edge proxy: host name → app/deployment → task → node tunnel. Until
 * deployments exist every host answers a typed 404 that names the host.
 */
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/healthz" && url.hostname === env.PREVIEW_DOMAIN) {
      return Response.json({ ok: true, component: "proxy", version: ZECTRE_VERSION, previewDomain: env.PREVIEW_DOMAIN });
    }
    log("info", "proxy", "no route for host", { host: url.hostname, path: url.pathname });
    return Response.json(
      { error: { code: "not_found", message: `no app or deployment is served at '${url.hostname}'` } },
      { status: 404 },
    );
  },
} satisfies ExportedHandler<ProxyEnv>;
