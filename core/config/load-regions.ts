import { readFile } from 'node:fs/promises';
import { Value } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { ConfigError, pointerToPath, type ConfigProblem } from './config-error.js';
import { RegionsFileSchema, type RegionsFile } from './regions-schema.js';
import { nodeEndpoint, type NodeSpec, type RegionSpec, type Topology } from './topology.js';

export const DEFAULT_RTT_MS = 150;
export const DEFAULT_SIM_TTFT_MS = 30;

/** Reads and validates a regions file; throws ConfigError listing every problem. */
export async function loadRegionsFile(path: string): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : String(err);
    throw new ConfigError(path, [{ path: '', message: reason }]);
  }
  return parseRegions(text, path);
}

export function parseRegions(text: string, source = 'regions.yaml'): Topology {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0] ?? e.message}` })),
    );
  }
  // Defaults first (missing `clusters`, `nodes` become []), so semantic checks see full objects.
  const raw: unknown = Value.Default(RegionsFileSchema, doc.toJS());
  const problems: ConfigProblem[] = [];
  if (!Value.Check(RegionsFileSchema, raw)) {
    for (const e of Value.Errors(RegionsFileSchema, raw)) {
      // Union members each report; keep the first message per path so the list stays readable.
      const path = pointerToPath(e.path);
      if (!problems.some((p) => p.path === path)) problems.push({ path, message: e.message.toLowerCase() });
    }
    throw new ConfigError(source, problems);
  }
  const file = raw as RegionsFile;
  checkSemantics(file, problems);
  if (problems.length > 0) throw new ConfigError(source, problems);
  return buildTopology(file);
}

function checkSemantics(file: RegionsFile, problems: ConfigProblem[]): void {
  const seen = new Map<string, string>();
  const claim = (kind: string, id: string, path: string): void => {
    const key = `${kind}:${id}`;
    const first = seen.get(key);
    if (first !== undefined) problems.push({ path, message: `duplicate ${kind} id "${id}" (first at ${first})` });
    else seen.set(key, path);
  };
  file.regions.forEach((region, r) => {
    claim('region', region.id, `regions[${r}].id`);
    if (region.gateway !== undefined && !isHttpUrl(region.gateway)) {
      problems.push({ path: `regions[${r}].gateway`, message: 'must be an http(s) URL' });
    }
    (region.clusters ?? []).forEach((cluster, c) => {
      claim('cluster', cluster.id, `regions[${r}].clusters[${c}].id`);
      (cluster.nodes ?? []).forEach((node, n) => {
        const at = `regions[${r}].clusters[${c}].nodes[${n}]`;
        claim('node', node.id, `${at}.id`);
        if (!isHttpUrl(node.url)) problems.push({ path: `${at}.url`, message: 'must be an http(s) URL' });
        if (!(node.capacity.tokensPerSecond > 0)) {
          problems.push({ path: `${at}.capacity.tokensPerSecond`, message: 'must be a positive number' });
        }
        if (!(node.capacity.maxSequences > 0)) {
          problems.push({ path: `${at}.capacity.maxSequences`, message: 'must be a positive integer' });
        }
        if (node.sim !== undefined && node.engine !== 'sim') {
          problems.push({ path: `${at}.sim`, message: 'only allowed with engine: sim' });
        }
      });
    });
  });
  const regionIds = new Set(file.regions.map((r) => r.id));
  (file.distances ?? []).forEach((d, i) => {
    d.between.forEach((id, j) => {
      if (!regionIds.has(id)) problems.push({ path: `distances[${i}].between[${j}]`, message: `unknown region "${id}"` });
    });
    if (!(d.rttMs >= 0)) problems.push({ path: `distances[${i}].rttMs`, message: 'must be zero or more' });
  });
  const home = file.limitsHome ?? file.regions[0]?.id;
  if (file.limitsHome !== undefined && !regionIds.has(file.limitsHome)) problems.push({ path: 'limitsHome', message: `unknown region "${file.limitsHome}"` });
  if (file.regions.some((r) => r.gateway !== undefined) && file.regions.find((r) => r.id === home)?.gateway === undefined) {
    problems.push({ path: 'limitsHome', message: `the limits home region "${home ?? ''}" needs a gateway: the other regions lease from it` });
  }
  if (file.defaultRttMs !== undefined && !(file.defaultRttMs >= 0)) {
    problems.push({ path: 'defaultRttMs', message: 'must be zero or more' });
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '';
  } catch {
    return false;
  }
}

function buildTopology(file: RegionsFile): Topology {
  const regions = new Map<string, RegionSpec>();
  const nodes: NodeSpec[] = [];
  for (const region of file.regions) {
    regions.set(
      region.id,
      Object.freeze({ id: region.id, name: region.name ?? region.id, residency: region.residency, gateway: region.gateway?.replace(/\/+$/, '') }),
    );
    for (const cluster of region.clusters ?? []) {
      for (const node of cluster.nodes ?? []) {
        nodes.push(
          Object.freeze({
            id: node.id,
            regionId: region.id,
            clusterId: cluster.id,
            ...nodeEndpoint(node.url),
            engine: node.engine as NodeSpec['engine'],
            models: Object.freeze([...node.models]),
            tokensPerSecond: node.capacity.tokensPerSecond,
            maxSequences: node.capacity.maxSequences,
            headers: Object.freeze({ ...(node.headers ?? {}) }),
            sim:
              node.engine === 'sim'
                ? Object.freeze({ ttftMs: node.sim?.ttftMs ?? DEFAULT_SIM_TTFT_MS, seed: node.sim?.seed ?? 0 })
                : undefined,
          }),
        );
      }
    }
  }
  const rtt = new Map<string, number>();
  for (const d of file.distances ?? []) {
    rtt.set(`${d.between[0]}|${d.between[1]}`, d.rttMs);
    rtt.set(`${d.between[1]}|${d.between[0]}`, d.rttMs);
  }
  const defaultRtt = file.defaultRttMs ?? DEFAULT_RTT_MS;
  return Object.freeze({
    regions,
    nodes: Object.freeze(nodes),
    limitsHome: file.limitsHome ?? (file.regions[0] as { id: string }).id,
    rttMs: (from: string, to: string): number => (from === to ? 0 : (rtt.get(`${from}|${to}`) ?? defaultRtt)),
  });
}
