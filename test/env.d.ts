import type { ApiEnv } from "../workers/api/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends ApiEnv {}
    interface GlobalProps {
      mainModule: typeof import("../workers/api/index.ts");
    }
  }
}
