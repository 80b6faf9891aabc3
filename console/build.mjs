// Builds the console into dist/console/: esbuild bundles src/main.tsx (Preact, uPlot) into one
// hashed script and one stylesheet, index.html names them, and the first load's compressed size
// is measured (and must stay within the budget of docs/console.md).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dist', 'console');
const BUDGET_BYTES = 200 * 1024;

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
const result = await build({
  entryPoints: [join(here, 'src', 'main.tsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: join(out, 'assets'),
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => p.split('dist/console/')[1]);
const js = outputs.find((p) => p.endsWith('.js'));
const css = outputs.find((p) => p.endsWith('.css'));
if (js === undefined || css === undefined) throw new Error(`esbuild wrote no script or stylesheet: ${outputs.join(', ')}`);
const html = readFileSync(join(here, 'index.html'), 'utf8').replace('%JS%', `/console/${js}`).replace('%CSS%', `/console/${css}`);
writeFileSync(join(out, 'index.html'), html);

const size = (file) => {
  const raw = readFileSync(join(out, file));
  return { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length, brotli: brotliCompressSync(raw).length };
};
const files = { 'index.html': size('index.html'), [js]: size(js), [css]: size(css) };
const total = Object.values(files).reduce((t, s) => ({ raw: t.raw + s.raw, gzip: t.gzip + s.gzip, brotli: t.brotli + s.brotli }), { raw: 0, gzip: 0, brotli: 0 });
writeFileSync(join(out, 'size.json'), `${JSON.stringify({ budget_bytes: BUDGET_BYTES, files, total }, null, 2)}\n`);
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
process.stdout.write(`console: first load ${kb(total.raw)} raw, ${kb(total.gzip)} gzip, ${kb(total.brotli)} brotli (budget ${kb(BUDGET_BYTES)} compressed)\n`);
if (total.gzip > BUDGET_BYTES) {
  process.stderr.write(`console: the first load is over its budget (${kb(total.gzip)} gzip > ${kb(BUDGET_BYTES)})\n`);
  process.exitCode = 1;
}
