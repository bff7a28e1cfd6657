import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** The three test layers of the design: inside workerd, plain Node, and end to end. */
export default defineConfig({
  test: {
    reporters: ["default", "./test/helpers/summary-reporter.ts"],
    // Request log lines are only worth reading when a test fails.
    silent: "passed-only",
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // One-second heartbeats let the offline alarm be tested in a few seconds.
              bindings: {
                OPERATOR_SECRET: "test-operator-secret",
                HEARTBEAT_SECONDS: "1",
                SECRETS_KEY: "7e57".repeat(16),
              },
              // The scheduler is another Worker; this layer does not load it (the e2e layer does).
              serviceBindings: { SCHEDULER: () => new Response("scheduler is not loaded in workerd tests", { status: 503 }) },
            },
          }),
        ],
        test: { name: "workers", include: ["test/workers/**/*.test.ts"] },
      },
      {
        test: { name: "node", include: ["test/node/**/*.test.ts"], environment: "node" },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Each file starts its own control plane; two at once is all 2 cores take.
          fileParallelism: false,
        },
      },
    ],
  },
});
