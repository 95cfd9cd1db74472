// The demo distillation in the built page (dist/) in headless Chromium, on the CPU backends
// (WebAssembly, SIMD, one thread: burn-flex, the page's default, and the burn-ndarray fallback)
// and on WebGPU (SwiftShader on a machine without a GPU), next to the native command line on the
// same configuration (burn-ndarray with one thread and with all, burn-flex with one thread and
// with all). Prints a table of seconds per outer iteration and ratios to native ndarray on one
// thread and to native flex (all threads, the command line's default).
//
//     bash scripts/build-web.sh && cargo build --release && node bench/browser.mjs [iterations] [nets] [only] [width] [workers] [epsilon]
//
// `nets` is `nets_per_iteration` on every side (1 unless given: one meta-step per iteration, the
// unit the other benchmarks time; the page's default is 4). `only` keeps the rows whose name
// contains it (e.g. "flex" for native flex and the page's flex backend); the ratio columns need
// their reference rows (native ndarray 1 thread, native flex all threads) kept. `width` is
// LeNet's width (`lenet_width`) on every side, 1 unless given. The page's CPU rows run in one
// Web Worker; `workers` above 1 adds a row of the page's flex backend with that many workers
// (the page's "CPU workers": helper workers computing an iteration's networks in parallel).
// `epsilon` (1, 4 or 8, the page's choices) adds a row of the page's flex backend with that
// privacy guarantee (issue 32), in `workers` workers. `only` may list several pieces of names
// separated by `|`.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { timeDemo } from '../tests/e2e/helpers.mjs';

const N = Number(process.argv[2] || 8);
const NETS = Number(process.argv[3] || 1);
const ONLY = process.argv[4] || '';
const WIDTH = Number(process.argv[5] || 1);
const WORKERS = Number(process.argv[6] || 1);
const EPSILON = process.argv[7] || '';
// The page's image size (its default in www/index.html), given to the native runs as well.
const SIZE = Number(/name="image_size"[^>]*value="(\d+)"/.exec(readFileSync('www/index.html', 'utf8'))[1]);


function nativeSeconds(backend, threads) {
  try {
    execFileSync('bash', ['-c', `${threads ? `RAYON_NUM_THREADS=${threads} MATMUL_NUM_THREADS=${threads} ` : ''}target/release/anondistill distill --max-iterations ${N} --nets-per-iteration ${NETS} --lenet-width ${WIDTH} --image-size ${SIZE} --no-eval --backend ${backend} --out /tmp/anondistill-bench.zip 2> /tmp/anondistill-bench.log`]);
    const m = /\(([\d.]+) s each\)/.exec(execFileSync('cat', ['/tmp/anondistill-bench.log']).toString());
    return m ? Number(m[1]) : NaN;
  } catch (e) {
    return NaN;
  }
}

const wanted = (name) => ONLY.split('|').some((piece) => name.includes(piece));
const rows = [];
for (const [name, backend, threads] of [['native ndarray, 1 thread', 'ndarray', 1], ['native ndarray, all threads', 'ndarray', 0], ['native flex, 1 thread', 'flex', 1], ['native flex, all threads', 'flex', 0]]) {
  if (wanted(name)) rows.push([name, nativeSeconds(backend, threads)]);
}
const names = { cpu: 'CPU (wasm, SIMD, 1 thread, flex)', ndarray: 'CPU (wasm, SIMD, 1 thread, ndarray)', webgpu: 'WebGPU' };
if (WORKERS > 1) names.shared = `CPU (wasm, SIMD, flex, ${WORKERS} workers)`;
if (EPSILON) names.private = `CPU (wasm, SIMD, flex, ${WORKERS} worker${WORKERS > 1 ? 's' : ''}), private, epsilon ${EPSILON}`;
for (const b of Object.keys(names)) {
  if (!wanted(`page ${names[b]}`)) continue;
  const shared = b === 'shared';
  const r = await timeDemo({ backend: shared || b === 'private' ? 'cpu' : b, iterations: N, nets: NETS, width: WIDTH, workers: shared || b === 'private' ? WORKERS : 1, privacy: b === 'private' ? EPSILON : undefined });
  rows.push([`page ${names[b]} [${r.used}]`, r.steady, r.all]);
}
const find = (name) => (rows.find((r) => r[0] === name) || [null, NaN])[1];
const ref = find('native ndarray, 1 thread');
const flex = find('native flex, all threads');
console.log(`demo distillation (LeNet, ${SIZE}x${SIZE}, 2 classes, 10 steps x 2 images x 3 epochs, batch 320), ${N} iterations, ${NETS} network(s) per iteration, LeNet width ${WIDTH}`);
console.log('| where | s per iteration (after the first chunk for the page) | s per iteration, all | ratio to native ndarray 1 thread | ratio to native flex, all threads |');
console.log('|---|---|---|---|---|');
for (const [name, s, all] of rows) console.log(`| ${name} | ${s.toFixed(3)} | ${all === undefined ? s.toFixed(3) : all.toFixed(3)} | ${(s / ref).toFixed(2)} | ${(s / flex).toFixed(2)} |`);
