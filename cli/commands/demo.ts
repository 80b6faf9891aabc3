import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadRegionsFile } from '../../core/config/load-regions.js';
import { settingsFromArgv, UsageError, waitForSignal } from '../run-command.js';

const CLI = fileURLToPath(new URL('../main.js', import.meta.url));

/**
 * `switchyard demo`: the realistic layout as separate processes. Every `engine: sim` node of
 * regions.yaml becomes a `switchyard sim` process on its own port, and every region gets its own
 * `switchyard gateway` (the first on --port, default 8080, the next ones on the following ports).
 * The environment reaches every child; Ctrl-C stops them all.
 */
export async function demoCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const topology = await loadRegionsFile(settings.configPath);
  const simNodes = topology.nodes.filter((n) => n.sim !== undefined);
  if (simNodes.length === 0) throw new UsageError(`${settings.configPath} declares no engine: sim nodes to run`);
  const children: ChildProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        await once(child, 'exit');
      }),
    );
  };
  try {
    for (const node of simNodes) {
      const url = new URL(node.origin);
      const args = ['sim', '--host', url.hostname, '--port', url.port || '80', '--models', node.models.join(','),
        '--tokens-per-second', String(node.tokensPerSecond), '--max-seqs', String(node.maxSequences),
        '--ttft-ms', String(node.sim?.ttftMs ?? 30), '--seed', String(node.sim?.seed ?? 0)];
      children.push(await spawnReady(args, 'sim listening', node.id));
    }
    const gateways: string[] = [];
    let port = settings.port;
    for (const region of topology.regions.values()) {
      // Without DATABASE_URL every gateway has its own embedded database: one directory each.
      const args = ['gateway', '--config', settings.configPath, '--host', settings.host, '--port', String(port), '--region', region.id,
        '--data-dir', join(settings.dataDir, `gateway-${region.id}`)];
      children.push(await spawnReady(args, 'gateway listening', `gateway ${region.id}`));
      gateways.push(`  ${region.id.padEnd(12)} http://${settings.host}:${port}/v1`);
      port += 1;
    }
    const first = `http://${settings.host}:${settings.port}`;
    const model = simNodes[0]?.models[0] ?? 'sim-small';
    process.stdout.write(`
Switchyard demo is up: ${simNodes.length} simulated GPU nodes, ${gateways.length} gateways.
${gateways.join('\n')}

Try it:
  curl -s ${first}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}'

  node --input-type=module -e "import OpenAI from 'openai';
    const client = new OpenAI({ baseURL: '${first}/v1', apiKey: 'unused' });
    const stream = await client.chat.completions.create({ model: '${model}', stream: true,
      messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 16 });
    for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
    console.log();"

Ctrl-C stops everything.
`);
    const exited = new Promise<string>((resolve) => {
      for (const child of children) child.once('exit', () => resolve('a child process exited'));
    });
    const reason = await Promise.race([waitForSignal(), exited]);
    process.stdout.write(`\nstopping (${reason})\n`);
  } finally {
    await stopAll();
  }
}

/** Starts `switchyard <args>` and resolves once it logs `readyMessage`; its output is prefixed. */
async function spawnReady(args: string[], readyMessage: string, label: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (line: string): string => `[${label}] ${line}\n`;
  let buffered = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.includes(readyMessage)) resolve(child);
        if (/"level":(40|50|60)/.test(line) || !line.startsWith('{')) process.stdout.write(prefix(line));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => process.stderr.write(prefix(c.toString('utf8').trimEnd())));
    child.once('exit', (code) => reject(new Error(`${label} exited with code ${code ?? 'null'} before it was ready`)));
  });
}
