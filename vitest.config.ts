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
                WEBHOOK_ALLOW_PRIVATE: "1",
              },
              // The scheduler is another Worker; this layer does not load it (the e2e layer does). This stand-in
              // places nothing, so tests place tasks themselves through the app object's RPCs, as the scheduler does.
              serviceBindings: { SCHEDULER: "scheduler-stand-in" },
              workers: [
                {
                  name: "scheduler-stand-in",
                  modules: true,
                  compatibilityDate: "2026-10-20",
                  script: `import { WorkerEntrypoint } from "cloudflare:workers";
                    const nothing = { placed: 0, stopped: 0, lost: 0, unplaced: 0 };
                    export default class extends WorkerEntrypoint {
                      fetch() { return new Response("the scheduler is not loaded in workerd tests", { status: 503 }); }
                      reconcile(trigger) { return { trigger, startedAt: new Date().toISOString(), durationMs: 0, ...nothing }; }
                      reconcileApp() { return nothing; }
                    }`,
                },
              ],
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
          // After the other layers, alone: real control planes and agents on 2 cores time out when they share them.
          sequence: { groupOrder: 1 },
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
