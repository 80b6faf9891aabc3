import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

export { Registry };

/**
 * One registry per process, with process metrics under `switchyard_process_*` and
 * `switchyard_build_info{version, role}` so dashboards can tell deployments apart.
 */
export function createRegistry(role: string, version: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'switchyard_' });
  const info = new Gauge({
    name: 'switchyard_build_info',
    help: 'Always 1; labels carry the build version and process role.',
    labelNames: ['version', 'role', 'node_version'],
    registers: [registry],
  });
  info.set({ version, role, node_version: process.version }, 1);
  return registry;
}

/**
 * A counter whose value another component keeps (a plain number it increments), read at scrape
 * time: the component needs no prom-client dependency and the hot path no label lookup.
 */
export function counterFrom(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}
