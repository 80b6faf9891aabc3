import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/config/config-error.js';
import type { Settings } from '../core/config/settings.js';

/** The scheduler's TLS material, read once at start-up; undefined means plaintext. */
export async function loadTls(settings: Settings): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (settings.grpcTlsCert === undefined || settings.grpcTlsKey === undefined) return undefined;
  try {
    return { cert: await readFile(settings.grpcTlsCert), key: await readFile(settings.grpcTlsKey) };
  } catch (err) {
    throw new ConfigError('settings', [{ path: 'SWITCHYARD_GRPC_TLS_CERT', message: `cannot read the TLS files: ${(err as Error).message}` }]);
  }
}
