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
import { launch, open, serve, setSetting, waitText } from '../tests/e2e/helpers.mjs';

const N = Number(process.argv[2] || 40);
const REPEATS = Number(process.argv[3] || 2);

async function secondsPerIteration(objective) {
  const server = await serve();
  const browser = await launch({ webgpu: false });
  try {
    const { page } = await open(browser, server.url);
    await page.click('#demo-button');
    await waitText(page, '#data-status', /400 images/);
    await page.selectOption('#settings [name=backend]', 'cpu');
    await page.selectOption('#settings [name=objective]', objective);
    await setSetting(page, 'max_iterations', N);
    await setSetting(page, 'workers', 1);
    if (objective === 'unrolled') {
      await setSetting(page, 'nets_per_iteration', 4);
      await setSetting(page, 'lenet_width', 1);
    }
    await page.click('#start');
    await waitText(page, '#run-status', new RegExp(`finished after ${N} iterations|stopped`), 1200000);
    const chunks = await page.evaluate(() => window.anondistill.chunks);
    const [first, last] = [chunks[0], chunks[chunks.length - 1]];
    if (last.iterations !== N || chunks.length < 2) throw new Error(`${objective}: ${last.iterations} of ${N} iterations in ${chunks.length} chunks`);
    return (last.elapsed - first.elapsed) / (last.iterations - first.iterations);
  } finally {
    await browser.close();
    server.close();
  }
}

console.log(`the page's demo, 20 images 28 × 28, CPU backend (flex, WebAssembly), one worker, ${N} iterations a run, seconds per iteration after the first chunk`);
console.log('| run | unrolled s | matching s | matching ÷ unrolled |');
console.log('|---|---|---|---|');
for (let r = 1; r <= REPEATS; r++) {
  const unrolled = await secondsPerIteration('unrolled');
  const matching = await secondsPerIteration('matching');
  console.log(`| ${r} | ${unrolled.toFixed(4)} | ${matching.toFixed(4)} | ${(matching / unrolled).toFixed(3)} |`);
}
