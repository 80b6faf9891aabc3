import { KNOBS } from '../core/config/settings.js';
import { FLAGS as SIM_FLAGS } from '../sim/sim-options.js';
import { HELP as AGENT_HELP } from './commands/agent.js';
import { HELP as KEYS_HELP } from './commands/keys.js';
import { HELP as NODES_HELP } from './commands/nodes.js';

export interface CommandHelp {
  /** One line: what the command runs. */
  readonly help: string;
}

/** Commands whose flags are their own; every other command takes the settings knobs. */
const OWN_USAGE: Readonly<Record<string, () => string>> = {
  agent: () => AGENT_HELP,
  keys: () => KEYS_HELP,
  nodes: () => NODES_HELP,
  sim: () =>
    `usage: switchyard sim [flags]\n  ${Object.keys(SIM_FLAGS).map((f) => `--${f}`).join(' ')}\n  (units and defaults: sim/README.md)`,
};

/** True when the command's arguments ask for help: `--help` or `-h` before a `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** `switchyard <name> --help`: the command's line from `switchyard help`, then its flags. */
export function commandUsage(name: string, command: CommandHelp): string {
  const own = OWN_USAGE[name];
  const body = own === undefined ? `usage: switchyard ${name} [flags]\n\nflags (flag, environment variable, meaning):\n${knobLines()}` : own();
  return `switchyard ${name}: ${command.help}\n\n${body}\n`;
}

/** `switchyard help`: every command, then the settings knobs. */
export function mainUsage(commands: Readonly<Record<string, CommandHelp>>): string {
  const cmds = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.help}`);
  const knobCommands = Object.keys(commands).filter((name) => OWN_USAGE[name] === undefined);
  return (
    `usage: switchyard <command> [flags]    (switchyard <command> --help: that command's flags)\n\n` +
    `commands:\n${cmds.join('\n')}\n\n` +
    `flags of ${knobCommands.join(', ')} (flag, environment variable, meaning):\n${knobLines()}\n`
  );
}

function knobLines(): string {
  return KNOBS.map((k) => `  --${k.flag.padEnd(24)} ${k.env.padEnd(34)} ${k.doc} (default: ${k.def ?? 'unset'})`).join('\n');
}
