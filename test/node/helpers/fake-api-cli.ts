import { type FakeApi, startFakeApi } from "./fake-api.ts";
import { perTestWithConfigDir } from "./per-test.ts";
import { type CliResult, runBinary, runInProcess } from "./run-cli.ts";

export interface FakeApiCli {
  /** The current test's fake API: a fresh one per test, behind a stable name (reads and writes reach it). */
  readonly api: FakeApi;
  /** `--url` and `--token` of the current test's API, as its admin. */
  flags(): string[];
  /** The environment that gives the CLI the current test's own config dir. */
  env(): Record<string, string>;
  /** The real binary, for the main paths. */
  zectre(...args: string[]): Promise<CliResult>;
  /** `main` in-process: the same code without Node's startup, for the variations. */
  quick(...args: string[]): Promise<CliResult>;
}

/** The CLI tests' common setup: a fake API and an empty config dir per test, and the CLI pointed at both. */
export function useFakeApiCli(): FakeApiCli {
  const { api, configDir } = perTestWithConfigDir(startFakeApi);
  const flags = () => ["--url", api.url, "--token", api.adminToken];
  const env = () => ({ ZECTRE_CONFIG_DIR: configDir() });
  return {
    api,
    flags,
    env,
    zectre: (...args) => runBinary([...flags(), ...args], { env: env() }),
    quick: (...args) => runInProcess([...flags(), ...args], { env: env() }),
  };
}
