import { afterEach, beforeEach } from "vitest";
import { useTempDirs } from "./run-cli.ts";

/**
 * A fresh instance of a test server per test, started before and closed after each one,
 * behind one stable name: reads, calls and writes on the returned object reach the
 * current test's instance.
 */
export function perTest<T extends { close(): unknown }>(start: () => Promise<T>): T {
  let current: T | undefined;
  beforeEach(async () => {
    current = await start();
  });
  afterEach(() => current?.close());
  const live = (): T => {
    if (!current) throw new Error("this test server exists only while a test runs");
    return current;
  };
  return new Proxy({} as T, {
    get(_target, key) {
      const instance = live();
      const value: unknown = Reflect.get(instance, key);
      return typeof value === "function" ? value.bind(instance) : value;
    },
    set(_target, key, value) {
      return Reflect.set(live(), key, value);
    },
  });
}

export interface PerTestServer<T> {
  /** The current test's server: a fresh one per test, behind a stable name. */
  readonly api: T;
  /** The current test's own, empty CLI config dir. */
  configDir(): string;
  /** A fresh directory, removed after the test. */
  tempDir(): string;
}

/** A fresh test server and an empty CLI config dir per test: the CLI tests' common setup. */
export function perTestWithConfigDir<T extends { close(): unknown }>(start: () => Promise<T>): PerTestServer<T> {
  const tempDir = useTempDirs();
  const api = perTest(start);
  let configDir = "";
  beforeEach(() => {
    configDir = tempDir();
  });
  return { api, configDir: () => configDir, tempDir };
}
