// Takes README.md's screenshot (docs/screenshot.png): the built page (dist/) in headless Chromium,
// the demo distilled for ITERATIONS (default 200, the page's default) iterations on 2 CPU
// workers, then evaluated and audited; the top 2,050 pixels. Run: node scripts/screenshot.mjs [ITERATIONS]
import { serve, launch, demoPage, waitText } from '../tests/e2e/helpers.mjs';

const iterations = Number(process.argv[2] || 200);
const server = await serve();
const browser = await launch({ webgpu: false });
try {
  const { page } = await demoPage(browser, server.url, { backend: 'cpu', iterations, workers: 2 });
  await page.setViewportSize({ width: 1100, height: 2050 });
  await page.click('#start');
  await waitText(page, '#run-status', new RegExp(`finished after ${iterations} iterations`), 1800000);
  await page.click('#evaluate');
  await page.waitForSelector('#audit-panel:not([hidden])', { timeout: 1200000 });
  // The top of the page: data, settings, the run, the evaluation and the audit's verdict.
  await page.screenshot({ path: new URL('../docs/screenshot.png', import.meta.url).pathname });
} finally {
  await browser.close();
  server.close();
}
