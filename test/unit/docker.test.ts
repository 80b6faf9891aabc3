import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KNOBS } from '../../core/config/settings.js';
import { parseRegions } from '../../core/config/load-regions.js';

/**
 * No Docker engine runs here, so the deployment files are checked for what can be checked without
 * one: they parse, and every file, service, volume, port, command and variable they name exists.
 */
const DOCKER = 'docker';
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, unknown> | string[];
}
const compose = parse(readFileSync(join(DOCKER, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;
const CLI_COMMANDS = [...readFileSync('cli/main.ts', 'utf8').matchAll(/^ {2}([a-z]+): \{ run:/gm)].map((m) => m[1]);
const AGENT_ENV = [...readFileSync('cli/commands/agent.ts', 'utf8').matchAll(/SWITCHYARD_[A-Z_]+/g)].map((m) => m[0]);
const KNOWN_ENV = new Set([...KNOBS.map((k) => k.env), ...AGENT_ENV, 'SWITCHYARD_URL']);

describe('docker/compose.yaml', () => {
  it('has the services the issue asks for', () => {
    for (const name of ['redis-eu-west', 'redis-eu-north', 'postgres', 'prometheus', 'grafana', 'gateway-eu-west', 'gateway-eu-north', 'scheduler-eu-west', 'scheduler-eu-north', 'worker-eu-west', 'worker-eu-north', 'sim-1', 'sim-2', 'agent-1', 'agent-2']) {
      expect(services, name).toHaveProperty(name);
    }
  });

  it('every build, bind mount, named volume and dependency exists', () => {
    for (const [name, s] of Object.entries(services)) {
      expect(s.image ?? s.build, `${name}: image or build`).toBeDefined();
      if (s.build !== undefined) expect(existsSync(join(DOCKER, s.build.context, s.build.dockerfile)), `${name}: ${s.build.dockerfile}`).toBe(true);
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0] as string;
        if (source.startsWith('.')) expect(existsSync(join(DOCKER, source)), `${name}: ${source}`).toBe(true);
        else expect(compose.volumes, `${name}: volume ${source}`).toHaveProperty(source);
      }
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) expect(services, `${name} depends on ${d}`).toHaveProperty(d);
    }
  });

  it('every Switchyard command, flag variable and config path exists in the project', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build === undefined) continue;
      const command = s.command ?? [];
      if (command.length > 0) expect(CLI_COMMANDS, `${name}: ${command[0] ?? ''}`).toContain(command[0]);
      for (const key of Object.keys(s.environment ?? {})) {
        if (key.startsWith('SWITCHYARD_')) expect(KNOWN_ENV.has(key), `${name}: ${key}`).toBe(true);
      }
      const flags = command.filter((a) => a.startsWith('--')).map((a) => a.slice(2));
      const simFlags = readFileSync('sim/sim-options.ts', 'utf8');
      for (const f of flags) {
        const known = KNOBS.some((k) => k.flag === f) || (command[0] === 'sim' && (simFlags.includes(`  '${f}': {`) || simFlags.includes(`  ${f}: {`)));
        expect(known, `${name}: --${f}`).toBe(true);
      }
    }
    // The config the containers read is a valid regions file.
    const regions = parseRegions(readFileSync(join(DOCKER, 'regions.yaml'), 'utf8'));
    expect([...regions.regions.keys()]).toEqual(['eu-west', 'eu-north']);
  });

  it('runs one worker per region of its regions.yaml (a region without one leaves background responses queued)', () => {
    const regions = parseRegions(readFileSync(join(DOCKER, 'regions.yaml'), 'utf8'));
    const workerRegions = Object.values(services)
      .filter((s) => s.command?.[0] === 'worker')
      .map((s) => s.command?.[(s.command?.indexOf('--region') ?? -2) + 1]);
    expect(workerRegions.sort()).toEqual([...regions.regions.keys()].sort());
  });

  it('runs every region standalone: its own Redis, scheduler, gateway and worker, reached at its gateway address (docs/multi-region.md)', () => {
    const regions = parseRegions(readFileSync(join(DOCKER, 'regions.yaml'), 'utf8'));
    expect(regions.limitsHome).toBe('eu-west');
    const regionOf = (s: Service): string | undefined => s.environment?.['SWITCHYARD_REGION'];
    const redisUrls = new Set<string>();
    for (const region of regions.regions.values()) {
      const redis = services[`redis-${region.id}`];
      expect(redis?.image, `redis-${region.id}`).toBe('redis:7-alpine');
      const url = `redis://redis-${region.id}:6379`;
      redisUrls.add(url);
      // Its gateway, reachable in the compose network at the address the other regions use.
      expect(region.gateway, region.id).toBe(`http://gateway-${region.id}:8080`);
      const gateway = services[`gateway-${region.id}`];
      expect(gateway?.command, region.id).toEqual(['gateway', '--region', region.id]);
      expect(gateway?.environment?.['SWITCHYARD_PORT'], region.id).toBe('8080');
      expect(gateway?.environment?.['SWITCHYARD_REGION_TOKEN'], region.id).toBe('${SWITCHYARD_REGION_TOKEN:-change-me-region-token}');
      // Every process of the region: that region's Redis and id, waiting for that Redis.
      const own = Object.entries(services).filter(([, s]) => regionOf(s) === region.id);
      expect(own.map(([name]) => name).sort(), region.id).toEqual([`gateway-${region.id}`, `scheduler-${region.id}`, `worker-${region.id}`]);
      for (const [name, s] of own) {
        expect(s.environment?.['REDIS_URL'], name).toBe(url);
        expect(s.environment?.['DATABASE_URL'], name).toBe('postgres://switchyard:switchyard@postgres:5432/switchyard');
        expect(s.depends_on, name).toHaveProperty(`redis-${region.id}`);
        expect(s.depends_on, name).not.toHaveProperty(`redis-${[...regions.regions.keys()].find((r) => r !== region.id) ?? ''}`);
      }
      // The region's agents report to the region's scheduler (which publishes to the region's Redis).
      const script = readFileSync(join(DOCKER, 'register-nodes.sh'), 'utf8');
      const nodes = [...script.matchAll(/^register (\S+) (\S+) /gm)].filter((m) => m[2] === region.id).map((m) => m[1]);
      expect(nodes.length, region.id).toBe(1);
      const agents = Object.entries(services).filter(([, s]) => nodes.includes(s.environment?.['SWITCHYARD_NODE_ID']));
      expect(agents.length, region.id).toBe(1);
      for (const [name, s] of agents) {
        expect(s.environment?.['SWITCHYARD_SCHEDULER_URL'], name).toBe(`scheduler-${region.id}:50051`);
        expect(s.depends_on, name).toHaveProperty(`scheduler-${region.id}`);
      }
    }
    // No process outside a region talks to a Redis; Postgres stays one; every gateway shares the token.
    expect(Object.keys(services).filter((n) => n.startsWith('redis')).sort()).toEqual(['redis-eu-north', 'redis-eu-west']);
    for (const [name, s] of Object.entries(services)) {
      if (regionOf(s) === undefined) expect(s.environment?.['REDIS_URL'], name).toBeUndefined();
    }
    expect(redisUrls.size).toBe(2);
    expect(Object.values(services).filter((s) => s.image?.startsWith('postgres')).length).toBe(1);
    // Prometheus scrapes every region's scheduler.
    const prom = readFileSync(join(DOCKER, 'prometheus/prometheus.yml'), 'utf8');
    for (const region of regions.regions.keys()) expect(prom).toContain(`scheduler-${region}:9090`);
  });

  it("each agent mounts only its own node's token volume; the register service writes them 0400 for the image's user", () => {
    const agents = Object.entries(services).filter(([name]) => name.startsWith('agent-'));
    expect(agents.length).toBe(2);
    for (const [name, s] of agents) {
      const node = s.environment?.['SWITCHYARD_NODE_ID'] as string;
      expect(s.volumes, name).toEqual([`tokens-${node}:/tokens:ro`]);
      expect(services['register']?.volumes, name).toContain(`tokens-${node}:/tokens/${node}`);
    }
    const script = readFileSync(join(DOCKER, 'register-nodes.sh'), 'utf8');
    expect(script).toMatch(/umask 077/);
    expect(script).toMatch(/chmod 0400/);
    // Re-registering keeps the token; only a node whose token file is missing gets a new one.
    expect(script).not.toMatch(/nodes remove/);
    expect(script).toMatch(/--rotate-token/);
  });

  it('every Switchyard container listens on all interfaces (others reach it by service name)', () => {
    expect(readFileSync(join(DOCKER, 'Dockerfile'), 'utf8')).toMatch(/SWITCHYARD_HOST=0\.0\.0\.0/);
    for (const [name, s] of Object.entries(services)) {
      const command = s.command ?? [];
      // The sim takes its address from --host only; the agent from SWITCHYARD_HOST in its own environment.
      if (command[0] === 'sim') expect(command.join(' '), name).toContain('--host 0.0.0.0');
      if (name.startsWith('agent')) expect(s.environment?.['SWITCHYARD_HOST'], name).toBe('0.0.0.0');
    }
  });

  it('Prometheus scrapes services that exist, on the ports they listen on', () => {
    const prom = parse(readFileSync(join(DOCKER, 'prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
    const targets = prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) {
      const [host, port] = t.split(':') as [string, string];
      const s = services[host];
      expect(s, t).toBeDefined();
      const text = JSON.stringify(s);
      expect(text.includes(`"${port}"`) || text.includes(`'${port}'`) || text.includes(`:${port}`) || (port === '8080' && host.startsWith('gateway')), t).toBe(true);
    }
  });
});

describe('docker/Dockerfile', () => {
  it('has a .dockerignore that keeps node_modules, data, dist and .git out of the build context', () => {
    const ignored = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim());
    for (const path of ['node_modules', 'data', 'dist', '.git']) expect(ignored, path).toContain(path);
    // Nothing the Dockerfile copies is ignored.
    const copied = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8').split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    for (const src of copied) expect(ignored, src).not.toContain(src.split('/')[0]);
  });

  it('copies only files that exist', () => {
    const lines = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8').split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) {
      const parts = line.split(/\s+/).slice(1);
      for (const src of parts.slice(0, -1)) expect(existsSync(src), line).toBe(true);
    }
  });
});

describe('dashboards and alert rules', () => {
  const documented = readFileSync('docs/metrics.md', 'utf8');
  const metricNames = (expr: string): string[] =>
    [...expr.matchAll(/switchyard_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''));

  it('every dashboard is valid JSON whose panels query documented metrics', () => {
    for (const file of ['fleet-capacity', 'node-detail', 'tenants', 'gateway']) {
      const dash = JSON.parse(readFileSync(join(DOCKER, 'grafana/dashboards', `${file}.json`), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr?: string; rawSql?: string }> }> };
      expect(dash.panels.length).toBeGreaterThan(2);
      for (const panel of dash.panels) {
        expect(panel.targets.length, panel.title).toBeGreaterThan(0);
        for (const t of panel.targets) {
          if (t.expr !== undefined) for (const m of metricNames(t.expr)) expect(documented, `${file} / ${panel.title}: ${m}`).toContain(m);
          else expect(t.rawSql, panel.title).toContain('usage_records');
        }
      }
    }
  });

  it('every alert rule queries documented metrics', () => {
    const rules = parse(readFileSync(join(DOCKER, 'prometheus/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const all = rules.groups.flatMap((g) => g.rules);
    expect(all.map((r) => r.alert)).toEqual(['RegionAbove90PercentCapacity', 'NodeStale', 'GatewayErrorRate', 'QueueWaitAboveSLO']);
    for (const r of all) for (const m of metricNames(r.expr)) expect(documented, `${r.alert}: ${m}`).toContain(m);
  });
});
