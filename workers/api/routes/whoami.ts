import { Hono } from "hono";
import { authenticate } from "../auth.ts";
import type { ApiContext } from "../env.ts";

export const whoamiRoutes = new Hono<ApiContext>()
  .use("/whoami", authenticate())
  .get("/whoami", (c) => c.json({ identity: c.get("identity") }));
