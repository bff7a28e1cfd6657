import { describe, expect, it } from "vitest";
import { useFakeApiCli } from "./helpers/fake-api-cli.ts";
import { expectOneErrorLine, expectOk } from "./helpers/run-cli.ts";

/**
 * `zectre node direct`: what it refuses before any request. Marking, listing and
 * going back to the tunnel against the real API are in test/e2e/proxy-direct.test.ts.
 */

const { api, quick } = useFakeApiCli();

describe("zectre node direct", () => {
  it("refuses a missing or doubled choice and addresses that are not a bare host, before any request", async () => {
    const help = "see 'zectre node direct --help'";
    const cases: Array<[string[], string]> = [
      [["web-1"], `zectre: error: give either --address ADDRESS or --off; ${help}`],
      [["web-1", "--address", "10.0.0.5", "--off"], `zectre: error: give either --address ADDRESS or --off; ${help}`],
      [["web-1", "--address", "http://10.0.0.5"], `zectre: error: invalid --address 'http://10.0.0.5': give only a host name or an IP address: no scheme, path or spaces; ${help}`],
      [["web-1", "--address", "10.0.0.5:8080"], `zectre: error: invalid --address '10.0.0.5:8080': give no port: each task has its own, and the proxy uses it; ${help}`],
      [["web-1", "--address", "169.254.169.254"], `zectre: error: invalid --address '169.254.169.254': link-local addresses (169.254.0.0/16) are refused; ${help}`],
      [["web.1", "--off"], `zectre: error: invalid node id 'web.1': node ids start with a letter or digit and use only letters, digits, '_' and '-'; ${help}`],
    ];
    for (const [args, expected] of cases) expectOneErrorLine(await quick("node", "direct", ...args), expected);
    expect(api.requests).toEqual([]);
  });

  it("is described in its help", async () => {
    const help = expectOk(await quick("node", "direct", "--help"));
    expect(help).toContain("--address ADDRESS");
    expect(help).toContain("--off");
    expect(help).toContain("--task-bind-address");
  });
});
