#!/usr/bin/env node
import { demoCommand } from './commands/demo.js';
import { gatewayCommand } from './commands/gateway.js';
import { startCommand } from './commands/start.js';
import { keysCommand } from './commands/keys.js';
import { nodesCommand } from './commands/nodes.js';
import { agentCommand } from './commands/agent.js';
import { schedulerCommand } from './commands/scheduler.js';
import { migrateCommand } from './commands/migrate.js';
import { workerCommand } from './commands/worker.js';
import { KNOBS } from '../core/config/settings.js';
import { runSim } from '../sim/main.js';
import { runCommand, UsageError } from './run-command.js';

const COMMANDS: Record<string, { run: (argv: readonly string[]) => Promise<void>; help: string }> = {
  start: { run: startCommand, help: 'gateway, scheduler, usage writer and simulated nodes in one process (the first-run default)' },
  gateway: { run: gatewayCommand, help: 'the OpenAI-compatible gateway for one region' },
  sim: { run: runSim, help: 'an OpenAI-compatible GPU-node simulator (vLLM-style; see sim/README.md)' },
  demo: { run: demoCommand, help: 'sims and one gateway per region as separate processes' },
  worker: { run: workerCommand, help: 'background consumers of a region (needs REDIS_URL): background responses, idle conversations to Postgres, buffered usage records to Postgres' },
  migrate: { run: migrateCommand, help: 'apply database migrations (processes also apply them at start-up)' },
  scheduler: { run: schedulerCommand, help: 'gRPC endpoint for node agents: join tokens, load reports to gateways, drain/resume' },
  agent: { run: agentCommand, help: 'runs beside a model server on a GPU node: GPU and engine load to the scheduler (switchyard agent for flags)' },
  nodes: { run: nodesCommand, help: 'node registry over the admin API: nodes register|list|show|drain|resume|remove' },
  keys: { run: keysCommand, help: 'API keys over the admin API: keys create|list|revoke (switchyard keys for flags)' },
};

function usage(): string {
  const cmds = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.help}`);
  const flags = KNOBS.map((k) => `  --${k.flag.padEnd(24)} ${k.env.padEnd(34)} ${k.doc} (default: ${k.def ?? 'unset'})`);
  return `usage: switchyard <command> [flags]\n\ncommands:\n${cmds.join('\n')}\n\nflags of start, gateway, scheduler, worker, migrate, demo (flag, environment variable, meaning):\n${flags.join('\n')}\n`;
}

const [name, ...argv] = process.argv.slice(2);
if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
  process.stdout.write(usage());
} else {
  const command = COMMANDS[name];
  await runCommand(async () => {
    if (command === undefined) throw new UsageError(`unknown command '${name}'`);
    await command.run(argv);
  });
}
