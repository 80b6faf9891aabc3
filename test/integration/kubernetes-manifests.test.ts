import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KNOBS } from '../../core/config/settings.js';
import { parseRegions } from '../../core/config/load-regions.js';
import { isSwitchyard, kubectl, OVERLAYS, podLabels, podSpec, render, type Container, type K8sObject } from '../helpers/kubernetes.js';

/**
 * No Kubernetes cluster runs here, so the manifests are checked for everything that can be checked
 * without one: every overlay renders with `kubectl kustomize`; every object validates against the
 * Kubernetes OpenAPI schemas (and the Prometheus Operator, KEDA and Gateway API CRD schemas) of
 * kubernetes-models — types, required fields and enums by its ajv validators, unknown fields by
 * TypeScript's excess-property check over its types; and every command, flag, variable, reference,
 * port and probe path they name exists in the project.
 */
const tool = kubectl();
if (!tool.available && process.env['CI'] !== undefined && process.env['CI'] !== '') {
  throw new Error(`${tool.problem ?? ''}: CI must render the Kubernetes manifests (.ci/run installs kubectl)`);
}
if (!tool.available) process.stderr.write(`kubernetes-manifests.test.ts skipped: ${tool.problem ?? ''} (CI is unset)\n`);
const suite = tool.available ? describe : describe.skip;

const require = createRequire(import.meta.url);
const rendered = new Map<string, K8sObject[]>(tool.available ? OVERLAYS.map((o) => [o, render(o)]) : []);
const all = (): Array<[string, K8sObject]> => [...rendered].flatMap(([overlay, objects]) => objects.map((o) => [overlay, o] as [string, K8sObject]));

/** Where kubernetes-models keeps the model (validator + types) of an apiVersion/kind. */
function modelPath(o: K8sObject): string {
  const [group, version] = o.apiVersion.includes('/') ? (o.apiVersion.split('/') as [string, string]) : ['', o.apiVersion];
  const pkg =
    group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator/'
    : group === 'keda.sh' ? '@kubernetes-models/keda/'
    : group === 'gateway.networking.k8s.io' ? '@kubernetes-models/gateway-api/'
    : 'kubernetes-models/';
  return `${pkg}${group === '' ? '' : `${group}/`}${version}/${o.kind}`;
}

const CLI_COMMANDS = [...readFileSync('cli/main.ts', 'utf8').matchAll(/^ {2}([a-z]+): \{ run:/gm)].map((m) => m[1]);
const agentSource = readFileSync('cli/commands/agent.ts', 'utf8');
const AGENT_ENV = [...agentSource.matchAll(/SWITCHYARD_[A-Z_]+/g)].map((m) => m[0]);
const KNOWN_ENV = new Set([...KNOBS.map((k) => k.env), ...AGENT_ENV, 'SWITCHYARD_URL']);
/** Downward-API values the agent reads itself (POD_NAME, POD_NAMESPACE) or the manifests interpolate. */
const DOWNWARD = new Set(['POD_NAME', 'POD_NAMESPACE', 'POD_IP', 'HOST_IP']);
const SECRET_ENV = new Set(['REDIS_URL', 'DATABASE_URL', 'SWITCHYARD_ADMIN_TOKEN', 'SWITCHYARD_REGION_TOKEN', 'SWITCHYARD_BOOTSTRAP_TOKEN', 'SWITCHYARD_JOIN_TOKEN']);

/** The flags each command accepts, read from its source. */
function acceptedFlags(command: string): Set<string> {
  if (command === 'agent') {
    const options = agentSource.slice(agentSource.indexOf('options: {'), agentSource.indexOf('},\n    }));'));
    return new Set([...options.matchAll(/'?([a-z-]+)'?: \{ type:/g)].map((m) => m[1] as string));
  }
  if (command === 'sim') {
    const sim = readFileSync('sim/sim-options.ts', 'utf8');
    return new Set([...sim.matchAll(/^ {2,}'?([a-z-]+)'?: \{ type:/gm)].map((m) => m[1] as string));
  }
  return new Set(KNOBS.map((k) => k.flag));
}

/** The source that serves a command's HTTP probe paths. */
const PROBE_SOURCES: Record<string, string[]> = {
  gateway: ['gateway/routes/health.ts'],
  scheduler: ['cli/metrics-server.ts'],
  worker: ['cli/metrics-server.ts'],
  agent: ['gpu-agent/agent.ts'],
  sim: ['sim/sim-server.ts'],
};

function containers(o: K8sObject): Container[] {
  const spec = podSpec(o);
  return spec === undefined ? [] : [...((spec.initContainers ?? []) as Container[]), ...(spec.containers as Container[])];
}

function byKind(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

function find(objects: K8sObject[], kind: string, name: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return selector !== undefined && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function settingsOf(objects: K8sObject[]): Record<string, string> {
  return find(objects, 'ConfigMap', configMapName(objects, 'switchyard-settings'))?.data ?? {};
}

/** Generated ConfigMaps get a hash suffix: the rendered name of a generator. */
function configMapName(objects: K8sObject[], base: string): string {
  return byKind(objects, 'ConfigMap').find((c) => c.metadata.name === base || c.metadata.name.startsWith(`${base}-`))?.metadata.name ?? base;
}

suite('deploy/kubernetes', () => {
  it('renders every overlay with kubectl kustomize, with the objects the issue asks for', () => {
    for (const [overlay, objects] of rendered) {
      const kinds = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
      for (const k of ['Deployment/gateway', 'Service/gateway', 'HorizontalPodAutoscaler/gateway', 'PodDisruptionBudget/gateway', 'Deployment/scheduler', 'Service/scheduler',
        'Deployment/worker', 'Job/switchyard-migrate', 'Deployment/vllm-llama-3-1-8b', 'NetworkPolicy/default-deny-ingress', 'Secret/switchyard-secrets', 'Secret/switchyard-bootstrap', 'ServiceAccount/switchyard']) {
        expect(kinds, `${overlay}: ${k}`).toContain(k);
      }
      expect(objects.some((o) => o.kind === 'Ingress' || o.kind === 'HTTPRoute'), overlay).toBe(true);
      expect(new Set(objects.filter((o) => o.kind !== 'Namespace').map((o) => o.metadata.namespace)), overlay).toEqual(new Set([`switchyard-${overlay}`]));
    }
    const kindsOf = (overlay: string): string[] => (rendered.get(overlay) ?? []).map((o) => o.kind);
    for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule', 'ScaledObject']) expect(kindsOf('eu-west'), kind).toContain(kind);
    expect(kindsOf('eu-north')).toEqual(expect.arrayContaining(['HTTPRoute', 'DaemonSet']));
    expect(kindsOf('eu-north')).not.toContain('Ingress');
    expect(byKind(rendered.get('dev') ?? [], 'StatefulSet').map((s) => s.metadata.name).sort()).toEqual(['postgres', 'redis']);
  });

  it('every object is valid against the Kubernetes OpenAPI schemas (and the CRDs\' schemas)', () => {
    for (const [overlay, o] of all()) {
      const path = modelPath(o);
      const mod = require(path) as Record<string, new (data: unknown) => { validate(): void }>;
      const Model = mod[o.kind];
      expect(Model, `${overlay}: no schema for ${o.apiVersion} ${o.kind}`).toBeDefined();
      // kustomize wraps long base64 values every 76 characters; the API server's decoder (Go's
      // encoding/base64) ignores those newlines, the schema's "byte" format does not.
      const data = o.kind === 'Secret' && o.data !== undefined ? Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, v.replace(/\n/g, '')])) : o.data;
      try {
        new (Model as new (data: unknown) => { validate(): void })({ ...o, ...(data === undefined ? {} : { data }) }).validate();
      } catch (err) {
        throw new Error(`${overlay}: ${o.kind}/${o.metadata.name}: ${(err as Error).message}`, { cause: err });
      }
    }
  });

  it('no object has a field its schema does not know (TypeScript excess-property check over the same models)', () => {
    const dir = join('node_modules', '.cache', 'switchyard-k8s-check');
    mkdirSync(dir, { recursive: true });
    const lines: string[] = [];
    const types = new Map<string, string>();
    all().forEach(([overlay, o], i) => {
      const path = modelPath(o);
      const alias = types.get(path) ?? `T${types.size}`;
      if (!types.has(path)) {
        types.set(path, alias);
        lines.unshift(`import type { I${o.kind} as ${alias} } from '${path}';`);
      }
      lines.push(`// ${overlay}: ${o.kind}/${o.metadata.name}`, `export const o${i}: ${alias} = ${JSON.stringify(o)};`);
    });
    const file = join(dir, 'objects.ts');
    writeFileSync(file, lines.join('\n') + '\n');
    const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '--strict', '--skipLibCheck', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', file], { encoding: 'utf8' });
    expect(tsc.stdout + tsc.stderr, 'unknown or mistyped fields').toBe('');
    expect(tsc.status).toBe(0);
  });

  it('every Switchyard container runs a real command with flags it accepts, through the image\'s entrypoint', () => {
    const dockerfile = readFileSync('docker/Dockerfile', 'utf8');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/main\.js"\]$/m);
    for (const [overlay, o] of all()) {
      for (const c of containers(o).filter(isSwitchyard)) {
        const where = `${overlay}: ${o.kind}/${o.metadata.name}/${c.name}`;
        expect(c.command, `${where}: keeps the image's entrypoint`).toBeUndefined();
        const args = c.args ?? [];
        expect(CLI_COMMANDS, where).toContain(args[0]);
        const accepted = acceptedFlags(args[0] as string);
        for (const a of args.filter((x) => x.startsWith('--'))) expect(accepted.has(a.slice(2).split('=')[0] as string), `${where}: ${a}`).toBe(true);
      }
    }
  });

  it('every variable is one the CLI documents; secrets come only from Secrets', () => {
    const documented = readFileSync('docs/configuration.md', 'utf8');
    for (const [overlay, objects] of rendered) {
      for (const o of objects) {
        if (o.kind === 'ConfigMap') for (const key of Object.keys(o.data ?? {})) expect(SECRET_ENV.has(key), `${overlay}: ${o.metadata.name} holds ${key}`).toBe(false);
        for (const c of containers(o).filter(isSwitchyard)) {
          const where = `${overlay}: ${o.kind}/${o.metadata.name}/${c.name}`;
          const names = (c.env ?? []).map((e) => e.name);
          for (const ref of c.envFrom ?? []) {
            const cm = ref.configMapRef === undefined ? undefined : find(objects, 'ConfigMap', ref.configMapRef.name);
            expect(cm, `${where}: envFrom ${JSON.stringify(ref)}`).toBeDefined();
            names.push(...Object.keys(cm?.data ?? {}));
          }
          for (const name of names) {
            expect(KNOWN_ENV.has(name) || DOWNWARD.has(name), `${where}: ${name} is not a Switchyard setting`).toBe(true);
            if (name.startsWith('SWITCHYARD_') || name.endsWith('_URL')) expect(documented, `${where}: ${name} undocumented`).toContain(name);
          }
          for (const e of c.env ?? []) {
            if (SECRET_ENV.has(e.name)) expect(e.valueFrom?.secretKeyRef, `${where}: ${e.name} must come from a Secret`).toBeDefined();
            if (e.name === 'POD_IP' || e.name === 'HOST_IP') expect(JSON.stringify(c), `${where}: ${e.name} unused`).toContain(`$(${e.name})`);
          }
          expect((c.args ?? []).join(' '), `${where}: no secret in args`).not.toMatch(/--[a-z-]*(token|password)\b|sy-boot-|sy-join-|:\/\/[^/\s]*@/i);
        }
      }
    }
  });

  it('every referenced Secret key, ConfigMap, ServiceAccount, port, selector and probe path exists', () => {
    for (const [overlay, objects] of rendered) {
      for (const o of objects) {
        const spec = podSpec(o);
        if (spec === undefined) continue;
        const where = `${overlay}: ${o.kind}/${o.metadata.name}`;
        if (spec.serviceAccountName !== undefined) expect(find(objects, 'ServiceAccount', spec.serviceAccountName), `${where}: service account`).toBeDefined();
        for (const v of spec.volumes ?? []) {
          if (v.configMap !== undefined) expect(find(objects, 'ConfigMap', v.configMap.name), `${where}: volume ${v.name}`).toBeDefined();
          if (v.secret !== undefined) expect(find(objects, 'Secret', v.secret.secretName), `${where}: volume ${v.name}`).toBeDefined();
        }
        const volumeNames = new Set([...(spec.volumes ?? []).map((v: { name: string }) => v.name), ...(o.spec?.volumeClaimTemplates ?? []).map((v: { metadata: { name: string } }) => v.metadata.name)]);
        for (const c of containers(o)) {
          for (const m of c.volumeMounts ?? []) expect(volumeNames.has(m.name), `${where}/${c.name}: mount ${m.name}`).toBe(true);
          for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            if (ref === undefined) continue;
            const secret = find(objects, 'Secret', ref.name);
            expect(secret, `${where}/${c.name}: Secret ${ref.name}`).toBeDefined();
            expect({ ...secret?.data, ...secret?.stringData }, `${where}/${c.name}: ${ref.name}.${ref.key}`).toHaveProperty([ref.key]);
          }
          const portNames = new Set((c.ports ?? []).map((p) => p.name));
          const portNumbers = new Set((c.ports ?? []).map((p) => p.containerPort));
          for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
            const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
            if (port !== undefined) expect(typeof port === 'string' ? portNames.has(port) : portNumbers.has(port), `${where}/${c.name}: probe port ${port}`).toBe(true);
            const path = probe?.httpGet?.path;
            const sources = isSwitchyard(c) ? PROBE_SOURCES[c.args?.[0] ?? ''] : undefined;
            if (path !== undefined && sources !== undefined) {
              expect(sources.some((s) => readFileSync(s, 'utf8').includes(`'${path}'`)), `${where}/${c.name}: ${path} served by ${sources.join(', ')}`).toBe(true);
            }
          }
        }
      }
      const pods = objects.filter((o) => podSpec(o) !== undefined);
      for (const svc of byKind(objects, 'Service')) {
        const selected = pods.filter((p) => matches(svc.spec.selector, podLabels(p)));
        expect(selected.length, `${overlay}: Service ${svc.metadata.name} selects no pod`).toBeGreaterThan(0);
        for (const port of svc.spec.ports as Array<{ name: string; targetPort: string | number }>) {
          const ok = selected.some((p) => containers(p).some((c) => (c.ports ?? []).some((cp) => cp.name === port.targetPort || cp.containerPort === port.targetPort)));
          expect(ok, `${overlay}: Service ${svc.metadata.name} port ${port.name}`).toBe(true);
        }
      }
      for (const target of [...byKind(objects, 'HorizontalPodAutoscaler').map((h) => h.spec.scaleTargetRef.name), ...byKind(objects, 'ScaledObject').map((s) => s.spec.scaleTargetRef.name)]) {
        expect(find(objects, 'Deployment', target), `${overlay}: scale target ${target}`).toBeDefined();
      }
      for (const pdb of byKind(objects, 'PodDisruptionBudget')) expect(pods.some((p) => matches(pdb.spec.selector.matchLabels, podLabels(p))), `${overlay}: PDB ${pdb.metadata.name}`).toBe(true);
      for (const np of byKind(objects, 'NetworkPolicy')) {
        const sel = np.spec.podSelector.matchLabels as Record<string, string> | undefined;
        if (sel !== undefined) expect(pods.some((p) => matches(sel, podLabels(p))), `${overlay}: NetworkPolicy ${np.metadata.name}`).toBe(true);
      }
      for (const sm of byKind(objects, 'ServiceMonitor')) {
        const svc = byKind(objects, 'Service').find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels ?? {}));
        expect(svc, `${overlay}: ServiceMonitor ${sm.metadata.name}`).toBeDefined();
        for (const ep of sm.spec.endpoints as Array<{ port: string }>) expect((svc?.spec.ports as Array<{ name: string }>).map((p) => p.name), `${overlay}: ${sm.metadata.name}`).toContain(ep.port);
      }
      for (const pm of byKind(objects, 'PodMonitor')) {
        const selected = pods.filter((p) => matches(pm.spec.selector.matchLabels, podLabels(p)));
        expect(selected.length, `${overlay}: PodMonitor ${pm.metadata.name}`).toBeGreaterThan(0);
        for (const ep of pm.spec.podMetricsEndpoints as Array<{ port: string }>) {
          expect(selected.every((p) => containers(p).some((c) => (c.ports ?? []).some((cp) => cp.name === ep.port))), `${overlay}: ${pm.metadata.name} port ${ep.port}`).toBe(true);
        }
      }
      for (const ing of byKind(objects, 'Ingress')) {
        for (const rule of ing.spec.rules) {
          for (const p of rule.http.paths) {
            const svc = find(objects, 'Service', p.backend.service.name);
            expect((svc?.spec.ports as Array<{ name: string }> | undefined)?.map((x) => x.name), `${overlay}: Ingress backend`).toContain(p.backend.service.port.name);
          }
        }
      }
      for (const route of byKind(objects, 'HTTPRoute')) {
        for (const ref of route.spec.rules.flatMap((r: { backendRefs: Array<{ name: string; port: number }> }) => r.backendRefs)) {
          expect((find(objects, 'Service', ref.name)?.spec.ports as Array<{ port: number }>).map((x) => x.port), `${overlay}: HTTPRoute backend`).toContain(ref.port);
        }
      }
    }
  });

  it("runs as the image's user, hardened: non-root, read-only root, no escalation, no capabilities, requests and limits", () => {
    const dockerfile = readFileSync('docker/Dockerfile', 'utf8');
    // `node` is uid 1000 in the node:20-bookworm-slim base image; the embedded Postgres' data dir.
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/SWITCHYARD_DATA_DIR=\/app\/data/);
    for (const [overlay, o] of all()) {
      const spec = podSpec(o);
      if (spec === undefined) continue;
      expect(spec.automountServiceAccountToken, `${overlay}: ${o.metadata.name}`).toBe(false);
      for (const c of containers(o)) {
        const where = `${overlay}: ${o.kind}/${o.metadata.name}/${c.name}`;
        const sc = c.securityContext ?? {};
        expect(sc['allowPrivilegeEscalation'], where).toBe(false);
        expect(sc.capabilities?.drop, where).toEqual(['ALL']);
        for (const r of ['cpu', 'memory']) {
          expect(c.resources?.requests?.[r], `${where}: requests.${r}`).toBeDefined();
          expect(c.resources?.limits?.[r], `${where}: limits.${r}`).toBeDefined();
        }
        if (!isSwitchyard(c)) continue;
        expect(sc['readOnlyRootFilesystem'], where).toBe(true);
        expect(sc['runAsNonRoot'] ?? spec.securityContext?.runAsNonRoot, where).toBe(true);
        expect(sc['runAsUser'] ?? spec.securityContext?.runAsUser, where).toBe(1000);
        if (['gateway', 'scheduler', 'worker', 'migrate'].includes(c.args?.[0] ?? '')) {
          expect((c.volumeMounts ?? []).map((m) => m.mountPath), `${where}: a writable /app/data`).toContain('/app/data');
        }
      }
    }
  });

  it('the gateway drains streams before it is killed and is reached from outside only through the ingress', () => {
    for (const [overlay, objects] of rendered) {
      const gw = find(objects, 'Deployment', 'gateway') as K8sObject;
      const spec = podSpec(gw);
      const c = (spec.containers as Container[]).find((x) => x.name === 'gateway') as Container;
      expect(gw.spec.replicas, overlay).toBeGreaterThanOrEqual(2);
      expect(find(objects, 'HorizontalPodAutoscaler', 'gateway')?.spec.minReplicas, overlay).toBeGreaterThanOrEqual(2);
      expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      const pause = Number(c.lifecycle?.preStop?.exec?.command[1] ?? NaN);
      expect(c.lifecycle?.preStop?.exec?.command[0]).toBe('sleep');
      const graceMs = Number(settingsOf(objects)['SWITCHYARD_SHUTDOWN_GRACE_MS'] ?? KNOBS.find((k) => k.key === 'shutdownGraceMs')?.def);
      expect(spec.terminationGracePeriodSeconds * 1000, overlay).toBeGreaterThan(pause * 1000 + graceMs);
      // From other namespaces, only the gateway's HTTP port (ingress) and metrics ports (monitoring).
      for (const np of byKind(objects, 'NetworkPolicy')) {
        for (const rule of np.spec.ingress ?? []) {
          if (!(rule.from ?? []).some((f: Record<string, unknown>) => f['namespaceSelector'] !== undefined)) continue;
          const ports = (rule.ports ?? []).map((p: { port: number }) => p.port);
          expect(ports.length, `${overlay}: ${np.metadata.name} opens every port`).toBeGreaterThan(0);
          expect(ports, `${overlay}: ${np.metadata.name} opens the scheduler's gRPC port`).not.toContain(50051);
        }
      }
      const ingressPaths = byKind(objects, 'Ingress').flatMap((i) => i.spec.rules.flatMap((r: { http: { paths: Array<{ path: string }> } }) => r.http.paths.map((p) => p.path)));
      const routePaths = byKind(objects, 'HTTPRoute').flatMap((r) => r.spec.rules.flatMap((x: { matches: Array<{ path: { value: string } }> }) => x.matches.map((m) => m.path.value)));
      expect([...ingressPaths, ...routePaths].sort(), overlay).toEqual(['/internal/v1', '/v1']);
    }
  });

  it("each overlay's region is in its regions.yaml, and its KEDA trigger watches that region's queue", () => {
    for (const [overlay, objects] of rendered) {
      const regionsCm = find(objects, 'ConfigMap', configMapName(objects, 'switchyard-regions'));
      const regions = parseRegions(regionsCm?.data?.['regions.yaml'] ?? '');
      const region = settingsOf(objects)['SWITCHYARD_REGION'] as string;
      expect([...regions.regions.keys()], overlay).toContain(region);
      expect(overlay === 'dev' ? 'eu-west' : overlay).toBe(region);
      for (const so of byKind(objects, 'ScaledObject')) {
        const prefix = settingsOf(objects)['SWITCHYARD_REDIS_PREFIX'];
        expect(so.spec.triggers[0].metadata.listName, overlay).toBe(`${prefix ?? ''}bull:responses-${region}:wait`);
      }
    }
  });

  it("the monitoring component carries docker/'s dashboards and alert rules unchanged (node deploy/kubernetes/sync-monitoring.mjs)", () => {
    const docker = 'docker/grafana/dashboards';
    const component = 'deploy/kubernetes/components/monitoring';
    const files = readdirSync(docker).filter((f) => f.endsWith('.json'));
    expect(readdirSync(join(component, 'dashboards')).sort()).toEqual(files.sort());
    for (const f of files) expect(readFileSync(join(component, 'dashboards', f), 'utf8'), f).toBe(readFileSync(join(docker, f), 'utf8'));
    const rule = parse(readFileSync(join(component, 'prometheus-rule.yaml'), 'utf8')) as { spec: { groups: unknown } };
    expect(rule.spec.groups).toEqual((parse(readFileSync('docker/prometheus/alerts.yml', 'utf8')) as { groups: unknown }).groups);
    const dashboards = byKind(rendered.get('eu-west') ?? [], 'ConfigMap').filter((c) => c.metadata.labels?.['grafana_dashboard'] === '1');
    expect(dashboards.flatMap((d) => Object.keys(d.data ?? {})).sort()).toEqual(files.sort());
  });
});
