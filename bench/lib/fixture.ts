import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startNode, type Child } from './processes.js';

/** The built CLI, from dist/bench/lib. */
export const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

/** Postgres for the gateways under test (usage writes go there, as in production). */
export const BENCH_PG = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A one-node regions.yaml in a fresh directory; returns the directory. */
export function oneNodeFleet(url: string, model: string, maxSequences = 4096): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));
  writeFileSync(
    join(dir, 'regions.yaml'),
    `regions:\n  - id: bench\n    residency: any\n    clusters:\n      - id: c\n        nodes:\n          - id: n1\n            url: ${url}\n            engine: vllm\n            models: [${model}]\n            capacity: { tokensPerSecond: 1000000, maxSequences: ${maxSequences} }\n`,
  );
  return dir;
}

/** `switchyard gateway` in front of one node, its state in `schema` of the bench Postgres. */
export function startBenchGateway(url: string, model: string, schema: string, env: NodeJS.ProcessEnv = {}, nodeArgs: readonly string[] = [], cli = CLI, maxSequences = 4096): Promise<Child> {
  const dir = oneNodeFleet(url, model, maxSequences);
  return startNode(cli, ['gateway', '--config', join(dir, 'regions.yaml'), '--port', '0'], 'gateway listening', {
    DATABASE_URL: BENCH_PG, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_DATA_DIR: dir, ...env,
  }, nodeArgs);
}

export async function dropBenchSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_PG });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
}

/** Replaces the block between `<!-- name:begin -->` and `<!-- name:end -->` in docs/benchmarks.md. */
export function writeResults(name: string, lines: readonly string[]): string {
  const path = fileURLToPath(new URL('../../../docs/benchmarks.md', import.meta.url));
  const doc = readFileSync(path, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${begin}\n${lines.join('\n')}\n${end}`;
  writeFileSync(path, doc.includes(begin) ? doc.replace(new RegExp(`${begin}[\\s\\S]*${end}`), block) : `${doc}\n${block}\n`);
  return path;
}
