import { describe, expect, it } from 'vitest';
import { FairQueue, type PriorityClass, type QueueEntry } from '../../scheduler/admission/fair-queue.js';

interface E extends QueueEntry {
  readonly id: string;
}
const e = (id: string, tenant: string, cost = 100, priority: PriorityClass = 'standard', weight = 1): E => ({ id, tenant, cost, weight, priority });

function drain(q: FairQueue<E>): string[] {
  const out: string[] = [];
  for (let x = q.shift(); x !== undefined; x = q.shift()) out.push(x.id);
  return out;
}

describe('FairQueue', () => {
  it('serves priority classes in order, FIFO within one tenant', () => {
    const q = new FairQueue<E>();
    q.push(e('b1', 't', 100, 'batch'));
    q.push(e('s1', 't'));
    q.push(e('i1', 't', 100, 'interactive'));
    q.push(e('s2', 't'));
    expect(q.size).toBe(4);
    expect(q.queuedTokens).toBe(400);
    expect(q.peek()?.id).toBe('i1');
    expect(drain(q)).toEqual(['i1', 's1', 's2', 'b1']);
    expect(q.size).toBe(0);
    expect(q.queuedTokens).toBe(0);
  });

  it('a flooding tenant cannot starve another: the late tenant is served within one request', () => {
    const q = new FairQueue<E>();
    for (let i = 0; i < 1000; i++) q.push(e(`flood${i}`, 'flood'));
    expect(q.shift()?.id).toBe('flood0');
    q.push(e('other0', 'other'));
    q.push(e('other1', 'other'));
    const order = drain(q);
    // other0 goes right after the flood request already in progress; then they alternate.
    expect(order.indexOf('other0')).toBeLessThanOrEqual(1);
    expect(order.indexOf('other1')).toBeLessThanOrEqual(3);
  });

  it('shares in tokens, not requests: a tenant of 1,000-token requests gets 1 for every 10 of 100 tokens', () => {
    const q = new FairQueue<E>();
    for (let i = 0; i < 50; i++) q.push(e(`big${i}`, 'big', 1000));
    for (let i = 0; i < 500; i++) q.push(e(`small${i}`, 'small', 100));
    const first = drain(q).slice(0, 110);
    const big = first.filter((id) => id.startsWith('big')).length;
    expect(big).toBeGreaterThanOrEqual(9);
    expect(big).toBeLessThanOrEqual(11);
  });

  it('weights: a tenant of weight 3 gets three times the tokens of a tenant of weight 1', () => {
    const q = new FairQueue<E>();
    for (let i = 0; i < 400; i++) {
      q.push(e(`a${i}`, 'a', 100, 'standard', 3));
      q.push(e(`b${i}`, 'b', 100, 'standard', 1));
    }
    const first = drain(q).slice(0, 200);
    const a = first.filter((id) => id.startsWith('a')).length;
    expect(a).toBeGreaterThanOrEqual(148);
    expect(a).toBeLessThanOrEqual(152);
  });

  it('an idle tenant does not bank credit', () => {
    const q = new FairQueue<E>();
    for (let i = 0; i < 100; i++) q.push(e(`x${i}`, 'x'));
    for (let i = 0; i < 90; i++) q.shift();
    // y was idle the whole time; now it floods: it shares from here on, it does not take 90 turns.
    for (let i = 0; i < 100; i++) q.push(e(`y${i}`, 'y'));
    const next = drain(q).slice(0, 20);
    expect(next.filter((id) => id.startsWith('x')).length).toBeGreaterThanOrEqual(9);
  });

  it('removed requests are skipped and uncounted; removing twice is a no-op', () => {
    const q = new FairQueue<E>();
    q.push(e('a', 't'));
    const b = q.push(e('b', 't'));
    q.push(e('c', 't'));
    expect(q.remove(b)).toBe(true);
    expect(q.remove(b)).toBe(false);
    expect(q.size).toBe(2);
    expect(q.queuedTokens).toBe(200);
    expect(drain(q)).toEqual(['a', 'c']);
  });
});
