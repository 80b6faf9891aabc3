import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

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
