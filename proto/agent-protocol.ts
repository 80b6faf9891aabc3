import { join } from 'node:path';
import { packageRoot } from '../core/package-root.js';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The agent protocol, loaded from agent.proto at run time (no code generation step to keep in
 * sync). Field names stay snake_case as in the .proto; 64-bit ints arrive as numbers; optional
 * fields that were not set are undefined (`oneofs`/`optional` honoured by proto-loader).
 */

export interface Hello {
  node_id: string;
  join_token: string;
  engine_kind: string;
  engine_version: string;
  models: string[];
  agent_version: string;
  /** Self-registration: the scheduler registers the node with `spec` when join_token is not valid. */
  bootstrap_token?: string;
  spec?: NodeSpec | null;
}

export interface NodeSpec {
  url: string;
  engine: string;
  tokens_per_second: number;
  max_sequences: number;
}

export interface Welcome {
  report_interval_ms: number;
  /** The node's own join token, when the agent joined with a bootstrap token. */
  node_credential?: string;
  region?: string;
  cluster?: string;
}

export interface GpuStats {
  index: number;
  uuid: string;
  name: string;
  utilization?: number;
  memory_used_bytes?: number;
  memory_total_bytes?: number;
  temperature_celsius?: number;
  power_watts?: number;
  /** Set on a MIG instance; index/uuid/name are then its parent GPU's. */
  mig_gpu_instance_id?: number;
  mig_profile?: string;
}

export interface EngineStats {
  running_requests: number;
  waiting_requests: number;
  kv_cache_usage?: number;
  prompt_tokens_total?: number;
  generation_tokens_total?: number;
  engine_unreachable?: boolean;
}

export interface LoadReport {
  timestamp_ms: number;
  gpus: GpuStats[];
  engine?: EngineStats | null;
}

export interface AgentMessage {
  hello?: Hello | null;
  report?: LoadReport | null;
  body?: 'hello' | 'report';
}

export interface SchedulerCommand {
  welcome?: Welcome | null;
  drain?: Record<string, never> | null;
  resume?: Record<string, never> | null;
  set_report_interval?: { report_interval_ms: number } | null;
  body?: 'welcome' | 'drain' | 'resume' | 'set_report_interval';
}

export interface AgentServiceDefinition {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
}

let loaded: AgentServiceDefinition | undefined;

export function agentService(): AgentServiceDefinition {
  if (loaded !== undefined) return loaded;
  const definition = protoLoader.loadSync(protoPath(), { keepCase: true, longs: Number, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    switchyard: { agent: { v1: { AgentService: grpc.ServiceClientConstructor } } };
  };
  const Client = pkg.switchyard.agent.v1.AgentService;
  loaded = { service: Client.service, Client };
  return loaded;
}

function protoPath(): string {
  return join(packageRoot(), 'proto/switchyard/agent/v1/agent.proto');
}
