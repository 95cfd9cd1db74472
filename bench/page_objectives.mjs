// Issue 44's speed row in the page: seconds per iteration of the demo run in the built page
// (dist/) in headless Chromium on its CPU backend (burn-flex in WebAssembly, one worker), the
// unrolled objective against matching on the same 20 images, in the same run of this script; the
// native command line's ratio is `bench_objectives`'s.
//
//     bash scripts/build-web.sh && node bench/page_objectives.mjs [iterations] [repeats]
//
// The unrolled side takes the command line's defaults (4 networks, LeNet width 1, 10 steps × 3
// epochs), as `bench_objectives` does; matching its own (embedder width 32, 128 real images a
// class, DSA). Each side runs `iterations` (40 unless given) and is timed after its first chunk;
// the two sides alternate `repeats` times (2 unless given), each in a fresh browser.
import { timeDemo } from '../tests/e2e/helpers.mjs';

const N = Number(process.argv[2] || 40);
const REPEATS = Number(process.argv[3] || 2);

async function secondsPerIteration(objective) {
  // The unrolled side's networks and LeNet's width as the command line's defaults (matching uses neither).
  const replay = objective === 'unrolled' ? { nets: 4, width: 1 } : {};
  const t = await timeDemo({ backend: 'cpu', objective, iterations: N, workers: 1, ...replay });
  if (t.iterations !== N || !Number.isFinite(t.steady)) throw new Error(`${objective}: ${t.iterations} of ${N} iterations, ${t.steady} s after the first chunk`);
  return t.steady;
}

console.log(`the page's demo, 20 images 28 × 28, CPU backend (flex, WebAssembly), one worker, ${N} iterations a run, seconds per iteration after the first chunk`);
console.log('| run | unrolled s | matching s | matching ÷ unrolled |');
console.log('|---|---|---|---|');
for (let r = 1; r <= REPEATS; r++) {
  const unrolled = await secondsPerIteration('unrolled');
  const matching = await secondsPerIteration('matching');
  console.log(`| ${r} | ${unrolled.toFixed(4)} | ${matching.toFixed(4)} | ${(matching / unrolled).toFixed(3)} |`);
}
