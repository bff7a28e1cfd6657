import type { ApiEnv } from "../workers/api/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends ApiEnv {}
  }
}
