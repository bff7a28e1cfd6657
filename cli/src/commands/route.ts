import { AppName } from "../../../protocol/deployments.ts";
import { HostName, type HostRoute, MAX_ROUTES_PER_APP } from "../../../protocol/host-routes.ts";
import type { ApiClient } from "../client.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["route"],
  summary: "Serve an app at your own host names, besides its <app>.<org> URL",
  description:
    "A custom host name serves the app's promoted deployment through the edge proxy. Point the name's DNS at the " +
    "proxy (a CNAME to its domain); a host name belongs to one app of one org at a time. Names under the proxy's own " +
    `domain are its app and preview URLs and cannot be routed. An app may have up to ${MAX_ROUTES_PER_APP} custom host names.`,
});

const APP_ARG = { name: "app", required: true, description: "The app's name" } as const;
const HOST_ARG = { name: "host", required: true, description: "A host name like www.example.com (no scheme, port or path)" } as const;

function checkApp(app: string, path: readonly string[]): string {
  const parsed = AppName.safeParse(app);
  if (!parsed.success) throw new UsageError(`invalid app name '${app}': ${parsed.error.issues[0]?.message ?? "not an app name"}`, path);
  return parsed.data;
}

function checkHost(host: string, path: readonly string[]): string {
  const parsed = HostName.safeParse(host);
  if (!parsed.success) throw new UsageError(`invalid host name '${host}': ${parsed.error.issues[0]?.message ?? "not a host name"}`, path);
  return parsed.data;
}

const api = {
  add: (client: ApiClient, app: string, host: string) =>
    client.request<{ route: HostRoute }>("POST", `/api/v1/apps/${encodeURIComponent(app)}/routes`, { body: { host } }),
  list: (client: ApiClient, app: string) => client.request<{ routes: HostRoute[] }>("GET", `/api/v1/apps/${encodeURIComponent(app)}/routes`),
  remove: (client: ApiClient, app: string, host: string) =>
    client.request<{ route: HostRoute }>("DELETE", `/api/v1/apps/${encodeURIComponent(app)}/routes/${encodeURIComponent(host)}`),
};

const add = defineCommand({
  path: ["route", "add"],
  usage: "zectre route add APP HOST",
  summary: "Serve APP's promoted deployment at HOST",
  description: "Adding a host the app already has changes nothing. A host another app has is refused. Needs the operate scope.",
  positionals: [APP_ARG, HOST_ARG],
  examples: ["zectre route add web www.example.com"],
  async run(ctx) {
    const path = ["route", "add"];
    const app = checkApp(ctx.args.app, path);
    const host = checkHost(ctx.args.host, path);
    const result = await api.add(ctx.client(), app, host);
    ctx.out.result(result, () => `${result.route.host} now serves app ${result.route.app} (its promoted deployment).`);
  },
});

const list = defineCommand({
  path: ["route", "list"],
  usage: "zectre route list APP",
  summary: "List APP's custom host names",
  positionals: [APP_ARG],
  examples: ["zectre route list web", "zectre route list web --format json"],
  async run(ctx) {
    const app = checkApp(ctx.args.app, ["route", "list"]);
    const result = await api.list(ctx.client(), app);
    ctx.out.result(result, (c) => {
      if (result.routes.length === 0) return `App ${app} has no custom host names. Add one with 'zectre route add ${app} HOST'.`;
      return table(["HOST", "CREATED", "BY"], result.routes.map((r) => [r.host, formatTime(r.createdAt, "-"), r.createdBy]), c);
    });
  },
});

const remove = defineCommand({
  path: ["route", "remove"],
  usage: "zectre route remove APP HOST",
  summary: "Stop serving APP at HOST (the proxy may answer from its cache for 2 more seconds)",
  positionals: [APP_ARG, HOST_ARG],
  examples: ["zectre route remove web www.example.com"],
  async run(ctx) {
    const path = ["route", "remove"];
    const app = checkApp(ctx.args.app, path);
    const host = checkHost(ctx.args.host, path);
    const result = await api.remove(ctx.client(), app, host);
    ctx.out.result(result, () => `${result.route.host} no longer serves app ${result.route.app}.`);
  },
});

export const routeCommands: readonly Entry[] = [group, add, list, remove];
