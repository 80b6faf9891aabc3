import { describe, expect, it } from 'vitest';
import { parseRegions } from '../../core/config/load-regions.js';
import { Fleet } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';
import { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import { LeastWorkPolicy } from '../../scheduler/placement/least-work.js';
import type { PlacementPolicy } from '../../scheduler/placement/policy.js';
import { RoundRobinPolicy } from '../../scheduler/placement/round-robin.js';

const n = (id: string, tps: number, seqs: number, models = 'm'): string => `
          - { id: ${id}, url: "http://127.0.0.1:1", engine: vllm, models: [${models}], capacity: { tokensPerSecond: ${tps}, maxSequences: ${seqs} } }`;

const YAML = `
regions:
  - id: eu-west
    residency: eu
    clusters:
      - id: a
        nodes:${n('big', 2400, 8)}${n('small', 300, 8)}
  - id: eu-far
    residency: eu
    clusters:
      - id: b
        nodes:${n('far', 1000, 8)}
  - id: eu-near
    residency: eu
    clusters:
      - id: c
        nodes:${n('near', 1000, 8)}
  - id: us-east
    residency: us
    clusters:
      - id: d
        nodes:${n('us', 5000, 100, 'm, only-us')}
distances:
  - { between: [eu-west, eu-near], rttMs: 10 }
  - { between: [eu-west, eu-far], rttMs: 90 }
  - { between: [eu-west, us-east], rttMs: 5 }
`;

function setup() {
  const fleet = new Fleet(parseRegions(YAML));
  const node = (id: string): NodeState => fleet.nodes.get(id) as NodeState;
  const choose = (policy: PlacementPolicy, origin = 'eu-west', cost = 100, exclude?: Set<NodeState>) =>
    policy.choose({ model: 'm', costTokens: cost, route: fleet.routeFrom(origin), exclude, now: 1000 })?.id;
  return { fleet, node, choose };
}

describe('Fleet routes', () => {
  it('orders regions by round trip and never leaves the residency group', () => {
    const { fleet } = setup();
    expect(fleet.routeFrom('eu-west').map((h) => h.region.id)).toEqual(['eu-west', 'eu-near', 'eu-far']);
    expect(fleet.routeFrom('us-east').map((h) => h.region.id)).toEqual(['us-east']);
    expect(fleet.knowsModel('eu-west', 'only-us')).toBe(false);
    expect(fleet.knowsModel('us-east', 'only-us')).toBe(true);
  });
});

describe('LeastWorkPolicy', () => {
  it('prefers the local region', () => {
    const { choose } = setup();
    expect(choose(new LeastWorkPolicy())).toBe('big');
  });

  it('spreads load in proportion to declared capacity', () => {
    const { node, choose } = setup();
    const policy = new LeastWorkPolicy();
    const counts = new Map<string, number>();
    // Reservations stay open: the local region fills up to its sequence slots, in proportion.
    for (let i = 0; i < 9; i++) {
      const id = choose(policy, 'eu-west', 100) as string;
      node(id).reserve(100);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(counts.get('big')).toBe(8);
    expect(counts.get('small')).toBe(1);
  });

  it('spills to the nearest other region only when the local one is down or full', () => {
    const { node, choose } = setup();
    const policy = new LeastWorkPolicy();
    node('big').healthy = false;
    node('small').ejectedUntil = 5000; // circuit breaker open
    expect(choose(policy)).toBe('near');
    node('big').healthy = true;
    for (let i = 0; i < 8; i++) node('big').reserve(10);
    node('small').ejectedUntil = 0;
    for (let i = 0; i < 8; i++) node('small').reserve(10);
    expect(choose(policy)).toBe('near'); // every local slot taken
    for (let i = 0; i < 8; i++) node('near').reserve(10);
    expect(choose(policy)).toBe('far');
    for (let i = 0; i < 8; i++) node('far').reserve(10);
    // All full: the least-loaded node of the nearest region waits in its engine queue.
    expect(choose(policy)).toBe('big');
  });

  it('never crosses residency, even with every node of the group down', () => {
    const { fleet, choose } = setup();
    for (const s of fleet.nodes.values()) if (s.spec.regionId !== 'us-east') s.healthy = false;
    expect(choose(new LeastWorkPolicy())).toBeUndefined();
  });

  it('skips nodes already tried for the request', () => {
    const { node, choose } = setup();
    expect(choose(new LeastWorkPolicy(), 'eu-west', 100, new Set([node('big'), node('small')]))).toBe('near');
  });
});

/**
 * Unequal nodes on a simulated clock: requests arrive every 25 ms, each costs 200 tokens, a node
 * drains work at its declared tokens/s. Least-work must finish the batch sooner than round robin,
 * which gives the 300 tokens/s node as much work as the 2400 tokens/s one.
 */
function makespan(policy: PlacementPolicy): number {
  const { fleet, node } = setup();
  const busyUntil = new Map<string, number>();
  let finish = 0;
  const route = fleet.routeFrom('eu-west').slice(0, 1);
  let open: Array<{ id: string; end: number }> = [];
  for (let i = 0; i < 200; i++) {
    const now = i * 25;
    for (const r of open) if (r.end <= now) node(r.id).release(200);
    open = open.filter((r) => r.end > now);
    const id = policy.choose({ model: 'm', costTokens: 200, route, exclude: undefined, now })?.id as string;
    node(id).reserve(200);
    const start = Math.max(now, busyUntil.get(id) ?? 0);
    const end = start + (200 / node(id).spec.tokensPerSecond) * 1000;
    busyUntil.set(id, end);
    open.push({ id, end });
    finish = Math.max(finish, end);
  }
  return finish;
}

describe('least-work beats round robin on unequal nodes', () => {
  it('finishes the same work much sooner', () => {
    const lw = makespan(new LeastWorkPolicy());
    const rr = makespan(new RoundRobinPolicy());
    expect(lw).toBeLessThan(rr * 0.5);
  });
});

describe('ExpectedCompletionPolicy', () => {
  const policy = new ExpectedCompletionPolicy({ horizonSeconds: 30, affinitySlack: 2 });
  const rank = (s: ReturnType<typeof setup>, opts: { cost?: number; key?: string; last?: NodeState; now?: number } = {}) =>
    policy.rank(
      { model: 'm', costTokens: opts.cost ?? 100, route: s.fleet.routeFrom('eu-west'), exclude: undefined, now: opts.now ?? 1000, affinityKey: opts.key, lastNode: opts.last },
      3,
    );
  const ids = (r: { nodes: NodeState[] }) => r.nodes.map((n) => n.id);

  it('ranks by expected completion: capacity first, round trip included, never another residency group', () => {
    const s = setup();
    const r = rank(s);
    expect(ids(r)).toEqual(['big', 'near', 'far']);
    expect(r.eligible).toBe(4);
  });

  it('counts the work already reserved on a node (the ledger view)', () => {
    const s = setup();
    // 30 s of big's work reserved (its token budget): only the others have headroom for more.
    s.node('big').setReserved(7, 2400 * 30);
    expect(ids(rank(s))[0]).toBe('near');
    // A lighter backlog (0.25 s of work): big still finishes sooner than near, 10 ms away.
    s.node('big').setReserved(4, 600);
    expect(ids(rank(s))[0]).toBe('big');
  });

  it('spills to another region only when it is expected to finish sooner, distance included', () => {
    const s = setup();
    s.node('big').draining = true;
    // small (300 tok/s, idle) vs near (1000 tok/s, 10 ms away): near finishes a 100-token request sooner.
    expect(ids(rank(s))[0]).toBe('near');
    // near busy: far (90 ms away, 1000 tok/s) still beats small (300 tok/s) at home…
    s.node('near').setReserved(7, 20_000);
    expect(ids(rank(s, { cost: 10 }))[0]).toBe('far');
    // …until 0.2 s of work reserved on far makes home sooner.
    s.node('far').setReserved(1, 200);
    expect(ids(rank(s, { cost: 10 }))[0]).toBe('small');
  });

  it('no headroom anywhere: no candidates, but the eligible nodes are counted (the request waits)', () => {
    const s = setup();
    for (const id of ['big', 'small', 'near', 'far']) s.node(id).setReserved(8, 0);
    const r = rank(s);
    expect(r.nodes).toEqual([]);
    expect(r.eligible).toBe(4);
  });

  it('a node whose agent went quiet counts as saturated', () => {
    const s = setup();
    s.node('big').report = { running: 0, waiting: 0, kvCacheUsage: undefined, atMs: 0 };
    expect(ids(rank(s, { now: 10_000 }))).not.toContain('big');
    expect(ids(rank(s, { now: 1000 }))).toContain('big');
  });

  it('session affinity: the same key goes to the same node, sessions spread by capacity', () => {
    const fleet = new Fleet(
      parseRegions(`
regions:
  - id: r
    residency: x
    clusters:
      - id: c
        nodes:${n('a', 1000, 8)}${n('b', 1000, 8)}${n('c', 2000, 16)}
`),
    );
    const req = (key: string) => ({ model: 'm', costTokens: 100, route: fleet.routeFrom('r'), exclude: undefined, now: 1000, affinityKey: key });
    const keys = Array.from({ length: 400 }, (_, i) => `session-${i}`);
    const first = keys.map((k) => policy.rank(req(k), 3).nodes[0]?.id);
    expect(keys.map((k) => policy.rank(req(k), 3).nodes[0]?.id)).toEqual(first);
    const count = (id: string) => first.filter((x) => x === id).length;
    // Capacity-weighted rendezvous: c (2000 tok/s) gets about half, a and b a quarter each.
    expect(count('c')).toBeGreaterThan(160);
    expect(count('a')).toBeGreaterThan(70);
    expect(count('b')).toBeGreaterThan(70);
  });

  it('session affinity: the remembered node wins within the slack and gives way when overloaded', () => {
    const s = setup();
    // near (10 ms away, 1000 tok/s) is within 2× of big's expected time: the session stays.
    s.node('big').setReserved(2, 300);
    expect(ids(rank(s, { key: 'k', last: s.node('near') }))[0]).toBe('near');
    expect(ids(rank(s, { key: 'k' }))[0]).toBe('big');
    // near overloaded: the session moves to the soonest node.
    s.node('near').setReserved(7, 25_000);
    expect(ids(rank(s, { key: 'k', last: s.node('near') }))[0]).toBe('big');
    // small is 8× slower per sequence than big: not worth keeping the session there.
    expect(ids(rank(s, { key: 'k', last: s.node('small') }))[0]).toBe('big');
  });
});
