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
import { runSim } from '../sim/main.js';
import { runCommand, UsageError } from './run-command.js';
import { commandUsage, mainUsage, wantsHelp } from './usage.js';

const COMMANDS: Record<string, { run: (argv: readonly string[]) => Promise<void>; help: string }> = {
  start: { run: startCommand, help: 'gateway, scheduler, usage writer and simulated nodes in one process (the first-run default)' },
  gateway: { run: gatewayCommand, help: 'the OpenAI-compatible gateway for one region' },
  sim: { run: runSim, help: 'an OpenAI-compatible GPU-node simulator (vLLM-style; see sim/README.md)' },
  demo: { run: demoCommand, help: 'sims and one gateway per region as separate processes' },
  worker: { run: workerCommand, help: 'background consumers of a region (needs REDIS_URL): background responses, idle conversations to Postgres, buffered usage records to Postgres' },
  migrate: { run: migrateCommand, help: 'apply database migrations (processes also apply them at start-up)' },
  scheduler: { run: schedulerCommand, help: 'gRPC endpoint for node agents: join tokens, load reports to gateways, drain/resume' },
  agent: { run: agentCommand, help: 'runs beside a model server on a GPU node: GPU and engine load to the scheduler' },
  nodes: { run: nodesCommand, help: 'node registry over the admin API: nodes register|list|show|drain|resume|remove' },
  keys: { run: keysCommand, help: 'API keys over the admin API: keys create|list|revoke' },
};

const [name, ...argv] = process.argv.slice(2);
// `switchyard help gateway` reads as `switchyard gateway --help`.
const topic = name === 'help' ? argv[0] : undefined;
if (topic !== undefined && COMMANDS[topic] !== undefined) {
  process.stdout.write(commandUsage(topic, COMMANDS[topic]));
} else if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
  process.stdout.write(mainUsage(COMMANDS));
} else if (COMMANDS[name] !== undefined && wantsHelp(argv)) {
  process.stdout.write(commandUsage(name, COMMANDS[name]));
} else {
  const command = COMMANDS[name];
  await runCommand(async () => {
    if (command === undefined) throw new UsageError(`unknown command '${name}'`);
    await command.run(argv);
  });
}
