import { Counter, Gauge, type Registry } from 'prom-client';
import { HotHistogram } from '../../core/hot-metrics.js';
import { PRIORITY_CLASSES, type PriorityClass } from '../../scheduler/admission/fair-queue.js';
import type { Fleet } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';

export const REJECTION_REASONS = ['deadline', 'queue_full', 'client_closed'] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

interface QueueView {
  readonly model: string;
  readonly region: string;
  readonly waiting: { readonly size: number; readonly queuedTokens: number };
}

/**
 * Admission and capacity metrics. Labels are bounded: priority and reason are fixed sets; model,
 * region and node come from the configured fleet.
 */
export class CapacityMetrics {
  private readonly wait: Array<{ observe(v: number): void }>;
  private readonly rejections: Map<RejectionReason, { inc(): void }>;
  private queues: () => Iterable<QueueView> = () => [];

  constructor(registry: Registry, fleet: Fleet, horizonSeconds: number) {
    const registers = [registry];
    // Observed on every request: a hot-metrics histogram (no label hashing per observation).
    const waitHistogram = new HotHistogram(
      'switchyard_queue_wait_seconds',
      'Time requests waited in the admission queue before capacity was granted (0 when placed at once), by priority class.',
      ['priority'],
      WAIT_BUCKETS,
      registry,
    );
    this.wait = PRIORITY_CLASSES.map((p) => waitHistogram.labels(p));
    const rejected = new Counter({
      name: 'switchyard_queue_rejections_total',
      help: 'Requests refused 503 no_capacity or dropped while waiting, by reason (deadline, queue_full, client_closed).',
      labelNames: ['reason'],
      registers,
    });
    this.rejections = new Map(REJECTION_REASONS.map((r) => [r, rejected.labels(r)]));
    // Every reason exists from the start (at 0): dashboards and alerts see 0, not "no data".
    for (const r of REJECTION_REASONS) rejected.inc({ reason: r }, 0);
    const queues = (): Iterable<QueueView> => this.queues();
    const perQueue = (name: string, help: string, value: (q: QueueView) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['model', 'region'],
        registers,
        collect() {
          this.reset();
          for (const q of queues()) this.set({ model: q.model, region: q.region }, value(q));
        },
      });
    };
    perQueue('switchyard_queue_depth', 'Requests waiting for capacity, by model and origin region.', (q) => q.waiting.size);
    perQueue('switchyard_queue_tokens', 'Tokens (estimated cost) of the requests waiting for capacity, by model and origin region.', (q) => q.waiting.queuedTokens);
    const perNode = (name: string, help: string, value: (n: NodeState) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['node', 'region'],
        registers,
        collect() {
          this.reset();
          for (const n of fleet.nodes.values()) this.set({ node: n.id, region: n.spec.regionId }, value(n));
        },
      });
    };
    perNode('switchyard_node_reserved_sequences', 'Sequences reserved on the node in the capacity ledger, all gateways (as this gateway last saw it).', (n) => n.reservedSequences);
    perNode('switchyard_node_reserved_tokens', 'Tokens (prompt + expected output) reserved on the node in the capacity ledger, all gateways.', (n) => n.reservedTokens);
    perNode('switchyard_node_max_sequences', 'Sequence limit of the node (declared).', (n) => n.spec.maxSequences);
    perNode('switchyard_node_token_budget', `Token budget of the node in the ledger: its tokens/s × the ${horizonSeconds} s horizon.`, (n) => n.tokenBudget(horizonSeconds));
    perNode('switchyard_node_capacity_tokens_per_second', 'Capacity placement plans with: learned from the agent when known, else declared.', (n) => n.tokensPerSecond);
    perNode('switchyard_node_declared_tokens_per_second', 'Capacity declared for the node (regions.yaml or its registration).', (n) => n.spec.tokensPerSecond);
    perNode('switchyard_node_learned_tokens_per_second', 'Capacity learned by the scheduler from the agent\'s token counter; 0 until learned.', (n) => n.learnedTokensPerSecond ?? 0);
    perNode('switchyard_node_headroom_sequences', 'Sequences the ledger can still reserve on the node (limit − reserved, all gateways).', (n) => Math.max(0, n.spec.maxSequences - n.reservedSequences));
    perNode('switchyard_node_headroom_tokens', 'Work tokens the ledger can still reserve on the node (budget − reserved, all gateways).', (n) => Math.max(0, n.tokenBudget(horizonSeconds) - n.reservedTokens));
  }

  watchQueues(queues: () => Iterable<QueueView>): void {
    this.queues = queues;
  }

  admitted(priority: PriorityClass, waitedSeconds: number): void {
    this.wait[PRIORITY_CLASSES.indexOf(priority)]?.observe(waitedSeconds);
  }

  rejected(reason: RejectionReason): void {
    this.rejections.get(reason)?.inc();
  }
}
