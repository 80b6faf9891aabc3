#!/usr/bin/env node
// Copies the Grafana dashboards and the Prometheus alert rules of docker/ into the monitoring
// component (kustomize reads no file outside a kustomization's folder). test/unit/kubernetes.test.ts
// fails when the copies differ: run `node deploy/kubernetes/sync-monitoring.mjs` after changing them.
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import process from 'node:process';
import { parse, stringify } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const component = join(here, 'components/monitoring');

export function prometheusRule(alertsYaml) {
  const { groups } = parse(alertsYaml);
  return {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'switchyard', labels: { 'app.kubernetes.io/name': 'switchyard', release: 'prometheus' } },
    spec: { groups },
  };
}

export const RULE_HEADER = '# Generated from docker/prometheus/alerts.yml by deploy/kubernetes/sync-monitoring.mjs: edit that file.\n';

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dashboards = join(root, 'docker/grafana/dashboards');
  for (const f of readdirSync(dashboards).filter((n) => n.endsWith('.json'))) copyFileSync(join(dashboards, f), join(component, 'dashboards', f));
  const rule = prometheusRule(readFileSync(join(root, 'docker/prometheus/alerts.yml'), 'utf8'));
  writeFileSync(join(component, 'prometheus-rule.yaml'), RULE_HEADER + stringify(rule, { lineWidth: 0 }));
  process.stdout.write('monitoring component synced from docker/\n');
}
