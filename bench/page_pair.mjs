// Two or more builds of the page timed in alternation: each round runs the demo distillation in
// headless Chromium once per build (the CPU backend, burn-flex), so that a slow stretch of a
// shared machine falls on every build alike. Prints each round's seconds per outer iteration
// (after the first chunk), then per build the mean, the median and the median over rounds of
// its ratio to the first build.
//
//     cp -r dist /tmp/before   # (built before the change)
//     bash scripts/build-web.sh && node bench/page_pair.mjs 10 30 1 /tmp/before dist
//
// Arguments: rounds, iterations, networks per iteration, then the folders of the builds.
import { resolve } from 'node:path';
import { timeDemo } from '../tests/e2e/helpers.mjs';

const [rounds, N, nets] = process.argv.slice(2, 5).map(Number);
const builds = process.argv.slice(5).map((d) => resolve(d));
if (!(rounds > 0 && N > 2 && nets > 0 && builds.length > 0)) {
  console.error('usage: node bench/page_pair.mjs ROUNDS ITERATIONS NETS DIST [DIST ...]');
  process.exit(2);
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return (s[Math.floor((s.length - 1) / 2)] + s[Math.ceil((s.length - 1) / 2)]) / 2;
};
const times = builds.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (const [i, dist] of builds.entries()) times[i].push((await timeDemo({ backend: 'cpu', iterations: N, nets, dist })).steady);
  console.log(`round ${r + 1}: ${times.map((t) => t[r].toFixed(4)).join('  ')}`);
}
console.log('| build | mean s per iteration | median | median ratio to the first, per round |');
console.log('|---|---|---|---|');
for (const [i, dist] of builds.entries()) {
  const mean = times[i].reduce((a, b) => a + b, 0) / rounds;
  const ratio = median(times[i].map((t, r) => t / times[0][r]));
  console.log(`| ${dist} | ${mean.toFixed(4)} | ${median(times[i]).toFixed(4)} | ${ratio.toFixed(3)} |`);
}
