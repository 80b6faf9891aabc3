import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../core/logger.js';
import { agentService, type AgentMessage, type Hello, type SchedulerCommand, type Welcome } from '../../proto/agent-protocol.js';
import { sanitizeReport, type CleanReport } from './report-validation.js';

/** Checks an agent's join token against the node registry (which stores only its hash). */
export interface AgentAuthenticator {
  verify(nodeId: string, joinToken: string): Promise<boolean>;
}

/** The outcome of an agent's self-registration with a bootstrap token. */
export type BootstrapResult =
  | { readonly ok: true; readonly credential: string; readonly region: string; readonly cluster: string }
  | { readonly ok: false; readonly code: grpc.status; readonly reason: string; readonly details: string };

/** Registers the node of an agent that presents a bootstrap token instead of a valid join token. */
export interface AgentBootstrapper {
  join(hello: Hello): Promise<BootstrapResult>;
}

/** What the scheduler knows of a connected node from its agent. */
export interface AgentView {
  readonly nodeId: string;
  readonly hello: Omit<Hello, 'join_token' | 'bootstrap_token'>;
  readonly connectedAt: number;
  lastReport: CleanReport | undefined;
  reportIntervalMs: number;
}

export interface AgentServiceOptions {
  readonly auth: AgentAuthenticator;
  /** Absent: Hellos with a bootstrap token are refused like a wrong join token. */
  readonly bootstrap?: AgentBootstrapper;
  readonly log: Logger;
  readonly reportIntervalMs: number;
  /** Larger messages are refused by gRPC itself (RESOURCE_EXHAUSTED). */
  readonly maxMessageBytes?: number;
  /** How long an agent may take to say Hello before the stream is closed. */
  readonly helloTimeoutMs?: number;
  readonly now?: () => number;
  readonly onReport?: (view: AgentView) => void;
  readonly onRejected?: (reason: string) => void;
  /** Called when an agent is admitted (its node id). */
  readonly onAccepted?: (nodeId: string) => void;
  readonly onClamped?: (field: string) => void;
  /** PEM certificate chain and key: the endpoint then serves TLS only. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  /** Commands that bring a newly connected agent up to date (e.g. Drain for a draining node). */
  readonly initialCommands?: (nodeId: string) => Promise<SchedulerCommand[]>;
}

type Stream = grpc.ServerDuplexStream<AgentMessage, SchedulerCommand>;

/**
 * The scheduler's side of the agent protocol (gRPC bidi stream per agent). Hello is checked
 * before anything else is accepted; a wrong or unknown node/token pair gets UNAUTHENTICATED (the
 * same answer for both, so node ids cannot be probed). Keepalive pings detect dead peers.
 */
export class AgentService {
  private server: grpc.Server | undefined;
  private readonly streams = new Map<string, Stream>();
  readonly agents = new Map<string, AgentView>();
  private readonly now: () => number;

  constructor(private readonly opts: AgentServiceOptions) {
    this.now = opts.now ?? Date.now;
  }

  async start(host: string, port: number): Promise<number> {
    const max = this.opts.maxMessageBytes ?? 64 * 1024;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      // Ping idle agents so a vanished node is noticed even when TCP says nothing.
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    server.addService(agentService().service, { Connect: (stream: Stream) => this.connect(stream) });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host}:${port}`, this.credentials(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return bound;
  }

  private credentials(): grpc.ServerCredentials {
    const tls = this.opts.tls;
    return tls === undefined ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }]);
  }

  /** Sends a command to a connected agent; false when it is not connected. */
  send(nodeId: string, command: SchedulerCommand): boolean {
    const stream = this.streams.get(nodeId);
    if (stream === undefined) return false;
    stream.write(command);
    if (command.set_report_interval) {
      const view = this.agents.get(nodeId);
      if (view) view.reportIntervalMs = command.set_report_interval.report_interval_ms;
    }
    return true;
  }

  private connect(stream: Stream): void {
    let nodeId: string | undefined;
    const helloTimer = setTimeout(() => {
      this.reject(stream, 'hello_timeout', grpc.status.DEADLINE_EXCEEDED, 'no Hello received in time');
    }, this.opts.helloTimeoutMs ?? 10_000);
    stream.on('data', (msg: AgentMessage) => {
      if (nodeId === undefined) {
        if (msg.hello == null) return this.reject(stream, 'no_hello', grpc.status.FAILED_PRECONDITION, 'the first message must be Hello');
        clearTimeout(helloTimer);
        const hello = msg.hello;
        nodeId = hello.node_id; // claimed; confirmed below before anything is trusted
        stream.pause();
        this.admit(hello).then(
          (result) => {
            if (!result.ok) return this.reject(stream, result.reason, result.code, result.details);
            this.accept(stream, hello, result.welcome);
            stream.resume();
          },
          (err: unknown) => {
            this.opts.log.warn({ err: (err as Error).message }, 'join token check failed');
            this.reject(stream, 'auth_error', grpc.status.UNAVAILABLE, 'cannot check the join or bootstrap token right now');
          },
        );
        return;
      }
      const view = this.agents.get(nodeId);
      if (view === undefined || msg.report == null) return;
      const { clean, problems } = sanitizeReport(msg.report, this.now());
      if (problems.length > 0) {
        this.opts.log.warn({ nodeId, fields: problems }, 'report values clamped');
        for (const p of problems) this.opts.onClamped?.(p);
      }
      view.lastReport = clean;
      this.opts.onReport?.(view);
    });
    const gone = (): void => {
      clearTimeout(helloTimer);
      if (nodeId !== undefined && this.streams.get(nodeId) === stream) {
        this.streams.delete(nodeId);
        this.agents.delete(nodeId);
        this.opts.log.info({ nodeId }, 'agent disconnected');
      }
    };
    stream.on('end', () => {
      gone();
      stream.end();
    });
    stream.on('error', gone);
    stream.on('close', gone);
  }

  /**
   * A valid join token admits the agent; failing that, a bootstrap token registers its node (a
   * restarted agent whose credential was lost re-joins as the same node). The join token is
   * tried first so that a running node keeps working after its bootstrap token expires.
   */
  private async admit(hello: Hello): Promise<{ ok: true; welcome: Partial<Welcome> } | { ok: false; code: grpc.status; reason: string; details: string }> {
    if (hello.join_token !== '' && (await this.opts.auth.verify(hello.node_id, hello.join_token))) return { ok: true, welcome: {} };
    const bootstrap = this.opts.bootstrap;
    if (hello.bootstrap_token === undefined || hello.bootstrap_token === '' || bootstrap === undefined) {
      return { ok: false, code: grpc.status.UNAUTHENTICATED, reason: 'unauthenticated', details: 'unknown node or wrong join token' };
    }
    const joined = await bootstrap.join(hello);
    if (!joined.ok) return joined;
    return { ok: true, welcome: { node_credential: joined.credential, region: joined.region, cluster: joined.cluster } };
  }

  private accept(stream: Stream, hello: Hello, welcome: Partial<Welcome>): void {
    const previous = this.streams.get(hello.node_id);
    // A reconnecting agent replaces its old stream (the old TCP connection may not be dead yet).
    if (previous !== undefined) previous.end();
    const { join_token: _secret, bootstrap_token: _bootstrap, ...rest } = hello;
    this.streams.set(hello.node_id, stream);
    this.agents.set(hello.node_id, { nodeId: hello.node_id, hello: rest, connectedAt: this.now(), lastReport: undefined, reportIntervalMs: this.opts.reportIntervalMs });
    stream.write({ welcome: { report_interval_ms: this.opts.reportIntervalMs, ...welcome } });
    this.opts.onAccepted?.(hello.node_id);
    this.opts.initialCommands?.(hello.node_id).then(
      (commands) => {
        if (this.streams.get(hello.node_id) === stream) for (const c of commands) stream.write(c);
      },
      (err: unknown) => this.opts.log.warn({ nodeId: hello.node_id, err: (err as Error).message }, 'initial commands failed'),
    );
    this.opts.log.info({ nodeId: hello.node_id, engine: hello.engine_kind, models: hello.models }, 'agent connected');
  }

  private reject(stream: Stream, reason: string, code: grpc.status, details: string): void {
    this.opts.onRejected?.(reason);
    stream.emit('error', Object.assign(new Error(details), { code, details }));
  }

  async stop(graceMs = 2000): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const s of this.streams.values()) s.end();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }
}
