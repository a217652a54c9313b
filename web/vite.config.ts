// The page's build, and its dev and preview servers. Both servers proxy grpc-web calls to the
// services' public ports with the routing table of the Envoy edge (deploy/envoy/envoy.yaml):
// each route's path prefix goes to its cluster's port on SUITE_HOST (default 127.0.0.1), so
// development sees exactly what production routes, and nothing else.
import { readFileSync } from "node:fs";
import preact from "@preact/preset-vite";
import { defineConfig, type ProxyOptions } from "vite";
import { parse } from "yaml";

type Route = { match: { prefix?: string; path?: string }; route?: { cluster: string } };
type Cluster = {
  name: string;
  load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[] };
};

/** Path prefix → `http://host:port` of the public port it routes to, from envoy.yaml
 * (`portOffset` shifts every port: the browser tests run a suite of their own beside). */
export function edgeRoutes(envoyYaml: string, host: string, portOffset = 0): Record<string, string> {
  const config = parse(envoyYaml);
  const clusters = new Map<string, number>(
    (config.static_resources.clusters as Cluster[]).map((c) => [
      c.name,
      c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value,
    ]),
  );
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const routes: Route[] = hcm.route_config.virtual_hosts[0].routes;
  const table: Record<string, string> = {};
  for (const r of routes) {
    const path = r.match.path ?? r.match.prefix;
    if (r.route && path && path !== "/") table[path] = `http://${host}:${(clusters.get(r.route.cluster) ?? 0) + portOffset}`;
  }
  return table;
}

const envoy = readFileSync(new URL("../deploy/envoy/envoy.yaml", import.meta.url), "utf8");
const host = process.env.SUITE_HOST ?? "127.0.0.1";
const offset = Number(process.env.SUITE_PORT_OFFSET ?? 0);
const proxy: Record<string, ProxyOptions> = Object.fromEntries(
  Object.entries(edgeRoutes(envoy, host, offset)).map(([path, target]) => [path, { target, changeOrigin: true }]),
);

export default defineConfig({
  plugins: [preact()],
  server: { proxy, port: 5173 },
  preview: { proxy, port: Number(process.env.PAGE_PORT ?? 8080), strictPort: true, host: "127.0.0.1" },
  build: { target: "es2022", sourcemap: false },
});
