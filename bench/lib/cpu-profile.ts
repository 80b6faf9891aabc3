import { readFileSync } from 'node:fs';

/** The parts of a V8 `.cpuprofile` (what `node --cpu-prof` writes) that the summary reads. */
interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: readonly number[] }[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly share: number; // of the samples in the window, 0..1
}

export interface ProfileSummary {
  readonly samples: number;
  readonly functions: readonly ProfileEntry[];
  readonly places: readonly ProfileEntry[];
  /** Our own functions (not npm packages, not Node) by total time: themselves and all they call. */
  readonly ours: readonly ProfileEntry[];
}

/**
 * Self time by function and by place (our source file, or the npm package, or Node's internals)
 * over the samples taken between `fromEndUs` and `toEndUs` microseconds before the profile ended:
 * the load window, leaving out start-up (module loading, compilation) and shutdown.
 */
export function summariseProfile(path: string, fromEndUs: number, toEndUs: number, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  const fn = new Map<string, number>();
  const place = new Map<string, number>();
  const lo = profile.endTime - fromEndUs;
  const hi = profile.endTime - toEndUs;
  let t = profile.startTime;
  let counted = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < lo || t > hi) continue;
    const frame = byId.get(profile.samples[i] as number);
    if (frame === undefined || frame.functionName === '(idle)') continue;
    counted++;
    const where = placeOf(frame.url);
    const name = `${frame.functionName || '(anonymous)'} ${where}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    fn.set(name, (fn.get(name) ?? 0) + 1);
    place.set(where || frame.functionName, (place.get(where || frame.functionName) ?? 0) + 1);
    // Total time: each of our functions on the sampled stack, once per sample (recursion aside).
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id);
      if (f === undefined || !isOurs(f.url)) continue;
      const key = `${f.functionName || '(anonymous)'} ${placeOf(f.url)}:${f.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + 1);
    }
  }
  const ranked = (m: Map<string, number>): ProfileEntry[] =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, n]) => ({ name, share: n / Math.max(1, counted) }));
  return { samples: counted, functions: ranked(fn), places: ranked(place), ours: ranked(inclusive) };
}

function isOurs(url: string): boolean {
  return url.includes('/dist/') && !url.includes('/node_modules/');
}

/** `node:internal/…`, an npm package name, or our file relative to dist/. */
function placeOf(url: string): string {
  if (url === '') return '';
  if (url.startsWith('node:')) return url.replace(/^node:internal\/(deps\/)?/, 'node:');
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const dist = url.indexOf('/dist/');
  return dist === -1 ? url : url.slice(dist + '/dist/'.length);
}
