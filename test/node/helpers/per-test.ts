import { afterEach, beforeEach } from "vitest";

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
