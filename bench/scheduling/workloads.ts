import { PREFILL_FACTOR, type RequestSource, type SimRequest } from './fleet-sim.js';

/**
 * The two workloads. Load is the share of the fleet's nominal capacity (its tokens/s) that the
 * offered work needs, counting a prompt token as 1/PREFILL_FACTOR of an output token (the model's
 * prefill cost) and nothing cached. Every load draws the same seeded sizes and only scales the
 * arrival gaps, so loads differ by rate alone and each policy sees the same requests.
 */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function lognormal(random: () => number, median: number, sigma: number): number {
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.max(1, Math.round(median * Math.exp(sigma * z)));
}

function exponential(random: () => number, mean: number): number {
  return -Math.log(1 - random()) * mean;
}

function work(promptTokens: number, outputTokens: number): number {
  return outputTokens + promptTokens / PREFILL_FACTOR;
}

/** Arrivals from a fixed list (open loop). */
class ListSource implements RequestSource {
  readonly total: number;
  private i = 0;
  constructor(private readonly requests: readonly SimRequest[]) {
    this.total = requests.length;
  }

  next(now: number): SimRequest | undefined {
    const req = this.requests[this.i];
    if (req === undefined || req.arrivalMs > now) return undefined;
    this.i++;
    return req;
  }

  settle(): number {
    return 0;
  }
}

/** Workload 1: Poisson arrivals, lognormal prompts (median 500) and outputs (median 200). */
export function poisson(load: number, capacity: number, seconds: number, seed: number): RequestSource {
  const random = rng(seed);
  const meanWork = work(500 * Math.exp(0.8 ** 2 / 2), 200 * Math.exp(0.6 ** 2 / 2));
  const rate = (load * capacity) / meanWork; // requests per second
  const out: SimRequest[] = [];
  for (let t = exponential(random, 1000 / rate); t < seconds * 1000; t += exponential(random, 1000 / rate)) {
    out.push({ arrivalMs: t, promptTokens: lognormal(random, 500, 0.8), outputTokens: Math.min(4000, lognormal(random, 200, 0.6)) });
  }
  return new ListSource(out);
}

interface Conversation {
  readonly id: string;
  readonly startMs: number;
  readonly system: number;
  readonly users: readonly number[];
  readonly outputs: readonly number[];
  /** Think time after each turn's answer, before the next message. */
  readonly thinkMs: readonly number[];
}

interface Turn {
  readonly conversation: Conversation;
  readonly index: number;
  /** Tokens of the conversation before this turn's message: system prompt and earlier turns. */
  readonly history: number;
}

/**
 * Workload 2: multi-turn conversations arriving as a Poisson process; each turn's prompt is the
 * conversation so far (its own ~1,000-token system prompt and every earlier message and answer)
 * plus a new message, sent an exponential think time (mean 5 s) after the previous answer ends.
 */
class ConversationSource implements RequestSource {
  readonly total: number;
  private started = 0;
  /** Next turns already scheduled, by arrival time. */
  private readonly due: SimRequest[] = [];
  private readonly turns = new Map<SimRequest, Turn>();

  constructor(private readonly conversations: readonly Conversation[]) {
    this.total = conversations.reduce((s, c) => s + c.users.length, 0);
  }

  next(now: number): SimRequest | undefined {
    const fresh = this.conversations[this.started];
    const queued = this.due[0];
    if (fresh !== undefined && fresh.startMs <= now && (queued === undefined || fresh.startMs <= queued.arrivalMs)) {
      this.started++;
      return this.turn({ conversation: fresh, index: 0, history: fresh.system }, fresh.startMs);
    }
    if (queued === undefined || queued.arrivalMs > now) return undefined;
    this.due.shift();
    return queued;
  }

  settle(req: SimRequest, now: number, served: boolean): number {
    const turn = this.turns.get(req);
    if (turn === undefined) return 0;
    this.turns.delete(req);
    const { conversation: c, index: i } = turn;
    // A rejected turn ends the conversation: its later turns count as not served.
    if (!served) return c.users.length - i - 1;
    if (i + 1 < c.users.length) {
      const next = this.turn({ conversation: c, index: i + 1, history: turn.history + (c.users[i] as number) + (c.outputs[i] as number) }, now + (c.thinkMs[i] as number));
      let at = this.due.length;
      while (at > 0 && (this.due[at - 1] as SimRequest).arrivalMs > next.arrivalMs) at--;
      this.due.splice(at, 0, next);
    }
    return 0;
  }

  private turn(turn: Turn, arrivalMs: number): SimRequest {
    const c = turn.conversation;
    const req = { arrivalMs, promptTokens: turn.history + (c.users[turn.index] as number), outputTokens: c.outputs[turn.index] as number, conversation: c.id };
    this.turns.set(req, turn);
    return req;
  }
}

const POOL = 3000;

export function conversations(load: number, capacity: number, seconds: number, seed: number): RequestSource {
  const random = rng(seed);
  const pool: Array<Omit<Conversation, 'startMs'> & { gap: number }> = [];
  let totalWork = 0;
  for (let i = 0; i < POOL; i++) {
    const system = lognormal(random, 1000, 0.3);
    const turns = 3 + Math.floor(random() * 6);
    const users: number[] = [];
    const outputs: number[] = [];
    const thinkMs: number[] = [];
    let history = system;
    for (let k = 0; k < turns; k++) {
      users.push(lognormal(random, 100, 0.8));
      outputs.push(Math.min(2000, lognormal(random, 200, 0.6)));
      thinkMs.push(exponential(random, 5000));
      totalWork += work(history + (users[k] as number), outputs[k] as number);
      history += (users[k] as number) + (outputs[k] as number);
    }
    pool.push({ id: `c${i}`, system, users, outputs, thinkMs, gap: exponential(random, 1) });
  }
  const rate = (load * capacity) / (totalWork / POOL); // conversations per second
  const chosen: Conversation[] = [];
  let t = 0;
  for (const c of pool) {
    t += (c.gap / rate) * 1000;
    if (t >= seconds * 1000) break;
    chosen.push({ id: c.id, startMs: t, system: c.system, users: c.users, outputs: c.outputs, thinkMs: c.thinkMs });
  }
  return new ConversationSource(chosen);
}
