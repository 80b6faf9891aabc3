import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/logger.js';
import { agentService, type AgentMessage, type Hello, type LoadReport, type SchedulerCommand } from '../proto/agent-protocol.js';

export interface ReporterOptions {
  /** The scheduler's gRPC address, host:port. */
  readonly target: string;
  /** Sent first on every stream; a function is asked again before each connection attempt. */
  readonly hello: Hello | (() => Promise<Hello>);
  /** Reads the node's current load; called once per report interval. */
  readonly collect: () => Promise<LoadReport>;
  readonly log: Logger;
  readonly onCommand?: (command: SchedulerCommand) => void;
  /** Called on every refusal (each retry too), with the gRPC code name in lower case. */
  readonly onRefused?: (code: string) => void;
  /** The node's own credential, from a Welcome after joining with a bootstrap token. */
  readonly onCredential?: (credential: string) => void;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  readonly random?: () => number;
  /** PEM of the CA that signed the scheduler's certificate: the stream then uses TLS. */
  readonly tlsCa?: Buffer;
}

type Call = grpc.ClientDuplexStream<AgentMessage, SchedulerCommand>;

/** The scheduler said no to this agent (wrong or rotated join token, unknown node). */
export interface Refusal {
  /** The gRPC status name, e.g. UNAUTHENTICATED. */
  readonly code: string;
  readonly details: string;
  readonly atMs: number;
}

const REFUSAL_HINT =
  'check --node-id and --join-token (`switchyard nodes register --rotate-token` issues a new one), or --bootstrap-token (`switchyard nodes bootstrap-token list` shows whether it expired, was revoked or is used up)';

/** Answers that will not change by retrying alone: an operator has to fix the token or the node. */
const REFUSED: ReadonlySet<grpc.status> = new Set([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]);

/**
 * The agent's side of the protocol: connect, Hello, then a LoadReport per interval (the interval
 * the scheduler's Welcome or SetReportInterval names). Any end of the stream, refused or broken,
 * leads to a reconnect after exponential backoff with full jitter, so a fleet of agents does not
 * reconnect in lockstep after a scheduler restart.
 *
 * A refusal (UNAUTHENTICATED, PERMISSION_DENIED) is kept in `refusal` until a Welcome arrives, so
 * the agent can say it is unhealthy and why; retries go on (the operator may fix the token). A
 * failure is logged once per distinct code and details, not once per retry: a refusal at error
 * level, a broken stream at warn, repeats at debug.
 */
export class AgentReporter {
  private readonly client: grpc.Client & { Connect(): Call };
  private call: Call | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  /** Set once a Welcome arrives on the current stream. */
  connected = false;
  intervalMs = 0;
  lastError: grpc.ServiceError | undefined;
  /** The scheduler's last refusal, until it welcomes this agent. */
  refusal: Refusal | undefined;
  /** The failure last logged, so that retries failing the same way stay quiet. */
  private lastLogged: string | undefined;

  constructor(private readonly opts: ReporterOptions) {
    const { Client } = agentService();
    const credentials = opts.tlsCa === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(opts.tlsCa);
    this.client = new Client(opts.target, credentials, {
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
    }) as unknown as grpc.Client & { Connect(): Call };
  }

  start(): void {
    this.stopped = false;
    this.open();
  }

  /** The node's credential once the scheduler issued one (self-registration): used in every later Hello. */
  credential: string | undefined;
  /** The node id of the last Hello sent. */
  nodeId: string | undefined;

  private open(): void {
    if (this.stopped) return;
    const hello = this.opts.hello;
    if (typeof hello !== 'function') return this.openWith(hello);
    hello().then(
      (h) => this.openWith(h),
      (err: unknown) => {
        this.opts.log.warn({ err: (err as Error).message }, 'preparing Hello failed');
        this.retryLater();
      },
    );
  }

  private openWith(base: Hello): void {
    if (this.stopped) return;
    const hello = this.credential === undefined ? base : { ...base, join_token: this.credential };
    this.nodeId = hello.node_id;
    const call = this.client.Connect();
    this.call = call;
    call.on('data', (cmd: SchedulerCommand) => this.onCommand(cmd));
    call.on('error', (err: grpc.ServiceError) => this.failed(err));
    call.on('close', () => this.closed(call));
    call.on('end', () => this.closed(call));
    call.write({ hello });
  }

  private failed(err: grpc.ServiceError): void {
    this.lastError = err;
    if (this.stopped) return;
    const code = grpc.status[err.code] ?? String(err.code);
    const refused = REFUSED.has(err.code);
    if (refused) {
      this.refusal = { code, details: err.details, atMs: Date.now() };
      this.opts.onRefused?.(code.toLowerCase());
    }
    const key = `${code}:${err.details}`;
    const fields = { code, details: err.details, target: this.opts.target, nodeId: this.nodeId };
    if (key === this.lastLogged) this.opts.log.debug(fields, refused ? 'the scheduler refused this agent again' : 'scheduler stream failed again');
    else if (refused) this.opts.log.error({ ...fields, hint: REFUSAL_HINT }, 'the scheduler refused this agent; retrying with backoff');
    else this.opts.log.warn(fields, 'scheduler stream failed');
    this.lastLogged = key;
  }

  private onCommand(cmd: SchedulerCommand): void {
    if (cmd.welcome) {
      const credential = cmd.welcome.node_credential;
      if (credential !== undefined && credential !== '') {
        this.credential = credential;
        this.opts.onCredential?.(credential);
      }
      this.connected = true;
      this.attempt = 0;
      this.lastError = undefined;
      this.refusal = undefined;
      this.lastLogged = undefined;
      this.schedule(cmd.welcome.report_interval_ms);
      this.opts.log.info({ intervalMs: this.intervalMs }, 'connected to scheduler');
    } else if (cmd.set_report_interval) {
      this.schedule(cmd.set_report_interval.report_interval_ms);
    }
    this.opts.onCommand?.(cmd);
  }

  private schedule(intervalMs: number): void {
    this.intervalMs = Math.max(100, intervalMs);
    if (this.reportTimer) clearInterval(this.reportTimer);
    const send = (): void => {
      this.opts.collect().then(
        (report) => this.call?.write({ report }),
        (err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'collecting load failed'),
      );
    };
    send();
    this.reportTimer = setInterval(send, this.intervalMs);
  }

  private closed(call: Call): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.connected = false;
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.retryLater();
  }

  private retryLater(): void {
    if (this.stopped) return;
    const base = this.opts.backoffBaseMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    const delay = Math.floor((this.opts.random ?? Math.random)() * Math.min(max, base * 2 ** this.attempt++));
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  stop(): void {
    this.stopped = true;
    if (this.reportTimer) clearInterval(this.reportTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.call?.end();
    this.call?.cancel();
    this.client.close();
  }
}
