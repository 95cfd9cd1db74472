// Shared set-up of the end-to-end tests: the built page served on loopback, Debian's Chromium
// driven by playwright-core, and every network request recorded.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const ARTIFACTS = new URL('../../target/e2e/', import.meta.url).pathname;
mkdirSync(ARTIFACTS, { recursive: true });

/** Serves the built page (`dist/`, or the folder `dist` when given) on loopback. */
export async function serve(dist) {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const env = dist ? { ...process.env, DIST: dist } : process.env;
  const proc = spawn('node', [new URL('../../scripts/serve.mjs', import.meta.url).pathname, String(port)], { stdio: ['ignore', 'pipe', 'inherit'], env });
  await new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => d.toString().includes('open http') && resolve());
    proc.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  return { url: `http://127.0.0.1:${port}/`, close: () => proc.kill() };
}

export async function launch({ webgpu }) {
  const args = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
  if (webgpu) args.push('--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader');
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
}

/** Opens the page and waits until its engine is ready; returns it with the list of requests
 *  made after that (by the page or its workers; a request the page's policy refuses is never
 *  made, so it is not listed). `bypassCSP` switches the page's policy off, for positive controls. */
export async function open(browser, url, { bypassCSP = false } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, bypassCSP });
  const page = await context.newPage();
  const late = [];
  let ready = false;
  // blob: and data: URLs stay in the tab (thumbnails, the download); anything else is network.
  page.on('request', (r) => ready && !/^(blob|data):/.test(r.url()) && late.push(r.url()));
  page.on('console', (m) => process.env.VERBOSE && console.log('page:', m.text()));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="1"]');
  ready = true;
  return { page, late };
}

export async function setSetting(page, name, value) {
  await page.locator(`#settings [name=${name}]`).fill(String(value));
}

export const waitText = (page, sel, re, timeout = 600000) =>
  page.waitForFunction(([s, r]) => new RegExp(r).test(document.querySelector(s).textContent), [sel, re.source], { timeout });

/** Opens the page with the demo patches loaded, the backend picked and the iterations set (and
 *  the objective, the networks per iteration, LeNet's width, the CPU workers and the privacy
 *  guarantee's epsilon, when given). */
export async function demoPage(browser, url, { backend, objective, iterations, nets, width, workers, privacy }) {
  const opened = await open(browser, url);
  const { page } = opened;
  await page.click('#demo-button');
  await waitText(page, '#data-status', /400 images/);
  if (backend) await page.selectOption('#settings [name=backend]', backend);
  // Before the iterations: an objective brings its own default there.
  if (objective) await page.selectOption('#settings [name=objective]', objective);
  await setSetting(page, 'max_iterations', iterations);
  if (nets) await setSetting(page, 'nets_per_iteration', nets);
  if (width) await setSetting(page, 'lenet_width', width);
  if (workers) await setSetting(page, 'workers', workers);
  if (privacy) await page.selectOption('#settings [name=privacy]', String(privacy));
  return opened;
}

/** Runs the demo distillation in a fresh browser on the page served from `dist` (`dist/` when
 *  not given) until it ends; returns the backend it used, the iterations it ran and its seconds
 *  per outer iteration, over the whole run (`all`) and after the first chunk (`steady`). For the
 *  benchmarks. */
export async function timeDemo({ backend, objective, iterations, nets, width, workers, privacy, dist }) {
  const server = await serve(dist);
  const browser = await launch({ webgpu: backend === 'webgpu' });
  try {
    const { page } = await demoPage(browser, server.url, { backend, objective, iterations, nets, width, workers, privacy });
    await page.click('#start');
    await waitText(page, '#run-status', new RegExp(`finished after ${iterations} iterations|stopped`), 1200000);
    const chunks = await page.evaluate(() => window.anondistill.chunks);
    const used = await page.getAttribute('#backend-label', 'data-backend');
    const [first, last] = [chunks[0], chunks[chunks.length - 1]];
    return { used, iterations: last.iterations, all: last.elapsed / last.iterations, steady: (last.elapsed - first.elapsed) / (last.iterations - first.iterations) };
  } finally {
    await browser.close();
    server.close();
  }
}
