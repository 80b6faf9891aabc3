import { describe, expect, it } from 'vitest';
import { TickBatcher, type Corkable } from '../../core/tick-batcher.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TickBatcher', () => {
  it('sends what one turn queued as one call per group, each caller getting its own result', async () => {
    const calls: Array<[string, number[]]> = [];
    const b = new TickBatcher<number, number>(async (group, items) => {
      calls.push([group, [...items]]);
      return items.map((x) => x * 10);
    });
    const results = await Promise.all([b.add('a', 1), b.add('b', 2), b.add('a', 3)]);
    expect(results).toEqual([10, 20, 30]);
    expect(calls).toEqual([['a', [1, 3]], ['b', [2]]]);
    // A later turn is a later call.
    expect(await b.add('a', 4)).toBe(40);
    expect(calls).toHaveLength(3);
  });

  it('a full group goes out at once; a failed call fails each of its items, and only those', async () => {
    const sizes: number[] = [];
    const b = new TickBatcher<number, number>(async (_g, items) => {
      sizes.push(items.length);
      if (items.includes(-1)) throw new Error('boom');
      return [...items];
    }, 2);
    const all = await Promise.allSettled([b.add('g', 1), b.add('g', 2), b.add('g', -1), b.add('g', 5)]);
    expect(sizes).toEqual([2, 2]);
    expect(all.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    const short = new TickBatcher<number, number>(async () => [1]);
    await expect(Promise.all([short.add('g', 1), short.add('g', 2)])).rejects.toThrow(/batch of 2 answered with 1/);
  });

  it('the batchers of one turn send with their shared connection corked, then uncorked once', async () => {
    const log: string[] = [];
    const socket: Corkable = { cork: () => log.push('cork'), uncork: () => log.push('uncork') };
    const send = (name: string) => async (_g: string, items: readonly number[]): Promise<number[]> => {
      log.push(`${name}:${items.length}`);
      return [...items];
    };
    const limits = new TickBatcher<number, number>(send('limits'), 256, () => socket);
    const ledger = new TickBatcher<number, number>(send('ledger'), 256, () => socket);
    await Promise.all([limits.add('k', 1), ledger.add('', 2), limits.add('k', 3)]);
    expect(log).toEqual(['cork', 'limits:2', 'ledger:1', 'uncork']);
    await turn();
  });
});
