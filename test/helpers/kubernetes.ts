import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** The overlays a user applies (`kubectl apply -k deploy/kubernetes/overlays/<name>`). */
export const OVERLAYS = ['eu-west', 'eu-north', 'dev'] as const;
export const KUSTOMIZE_ROOT = 'deploy/kubernetes';

/** A rendered Kubernetes object, loosely typed: tests read what they check. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  [key: string]: unknown;
}

export interface Kubectl {
  readonly available: boolean;
  /** Why it cannot be used, when it cannot. */
  readonly problem: string | undefined;
}

/**
 * kubectl with a kustomize new enough for components (v5+: kubectl 1.27+). CI must have it (its
 * .ci/run installs it); elsewhere a test may skip when it is absent, saying so.
 */
export function kubectl(): Kubectl {
  const res = spawnSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
  if (res.error !== undefined || res.status !== 0) return { available: false, problem: `kubectl is not installed (${res.error?.message ?? res.stderr.trim()})` };
  const version = (JSON.parse(res.stdout) as { kustomizeVersion?: string }).kustomizeVersion ?? '';
  const major = Number(/^v(\d+)/.exec(version)?.[1] ?? 0);
  if (major < 5) return { available: false, problem: `kubectl's kustomize is ${version || 'unknown'}; components need v5+ (kubectl 1.27+)` };
  return { available: true, problem: undefined };
}

/** `kubectl kustomize` of an overlay, parsed. Throws with kustomize's own message on failure. */
export function render(overlay: string): K8sObject[] {
  const res = spawnSync('kubectl', ['kustomize', join(KUSTOMIZE_ROOT, 'overlays', overlay)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (res.status !== 0) throw new Error(`kubectl kustomize ${overlay} failed: ${res.stderr}`);
  return parseAllDocuments(res.stdout).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

export interface Probe {
  httpGet?: { path: string; port: string | number };
  tcpSocket?: { port: string | number };
  exec?: { command: string[] };
}

/** Objects that run pods: their pod template spec. */
export function podSpec(o: K8sObject): any | undefined { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind)) return o.spec?.template?.spec;
  return undefined;
}

export function podLabels(o: K8sObject): Record<string, string> {
  return (o.spec?.template?.metadata?.labels ?? {}) as Record<string, string>;
}

/** Switchyard's own image (the base names it `switchyard`; overlays give it a registry and tag). */
export function isSwitchyard(c: Container): boolean {
  return /(^|\/)switchyard(:|$)/.test(c.image);
}
