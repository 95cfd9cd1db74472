// A model-based test of the page's controls: random sequences of user actions (load the demo,
// a good folder or a refused one; start, pause, resume, cancel, evaluate, audit, download, save;
// change a setting) with random delays, in the real page in headless Chromium, checking after
// every action invariants that hold whatever the timing. The engine worker's messages and the
// user's clicks are logged in the page, in the order the page sees them (an init script wraps
// `Worker`), so the checks read what happened, not what the page says about itself.
//
// CI runs a short seed set; `scripts/clicks.sh` runs a longer one. Environment:
//   CLICK_SEEDS=1,2,3  CLICK_ACTIONS=40  CLICK_DIST=<a dist folder to test instead of dist/>
//   CLICK_IGNORE=<invariant names, comma-separated, to look past> (to see what an older page
//   does after its first broken invariant)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, launch } from './helpers.mjs';

const DEMO = new URL('../../demo/pneumonia-xray/', import.meta.url).pathname;
const SEEDS = (process.env.CLICK_SEEDS || '1,2,3').split(',').map(Number);
const ACTIONS = Number(process.env.CLICK_ACTIONS || 40);
const IGNORE = new Set((process.env.CLICK_IGNORE || '').split(',').filter(Boolean));

let server;
before(async () => { server = await serve(process.env.CLICK_DIST); });
after(() => server.close());

/** A seeded generator of numbers in [0, 1) (mulberry32). */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Folders on disk: good (6 patches a class), nested (a folder inside a patient folder: refused
 *  by the page), one class (refused by the engine). */
function folders() {
  const make = (classes, nested) => {
    const root = mkdtempSync(join(tmpdir(), 'clicks-'));
    for (const [c, source] of Object.entries(classes)) {
      mkdirSync(join(root, c));
      for (const f of readdirSync(join(DEMO, source)).slice(0, 6)) cpSync(join(DEMO, source, f), join(root, c, f));
    }
    if (nested) {
      mkdirSync(join(root, 'normal', 'p1', 'left'), { recursive: true });
      const f = readdirSync(join(DEMO, 'normal'))[0];
      cpSync(join(DEMO, 'normal', f), join(root, 'normal', 'p1', 'left', f));
    }
    return root;
  };
  const two = { normal: 'normal', pneumonia: 'pneumonia' };
  return { good: make(two, false), nested: make(two, true), oneClass: make({ normal: 'normal' }, false) };
}

// Logs, in the page: every message of the engine worker ('in'), every message the page sends it
// ('out'), every click and every change of a file input or a setting ('user').
const LOGGER = () => {
  const log = [];
  window.__log = log;
  const W = window.Worker;
  window.Worker = class extends W {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => log.push({ dir: 'in', type: e.data && e.data.type, resumed: !!(e.data && e.data.resumed) }));
    }
    postMessage(m, t) {
      log.push({ dir: 'out', type: m && m.type });
      return super.postMessage(m, t);
    }
  };
  document.addEventListener('click', (e) => e.target.id && log.push({ dir: 'user', type: 'click', id: e.target.id }), true);
  document.addEventListener('change', (e) => log.push({ dir: 'user', type: 'change', id: e.target.id || e.target.name }), true);
};

const BUTTONS = ['start', 'pause', 'cancel', 'evaluate', 'audit', 'download', 'save-session', 'demo-button'];
const STATUS = ['data-status', 'settings-status', 'run-status', 'eval-status', 'audit-status'];

/** What the page shows, read at one instant, with the log entries since the last read. */
const snapshot = (page, from) => page.evaluate(([buttons, status, from]) => {
  const el = (id) => document.getElementById(id);
  const b = {};
  for (const id of buttons) b[id] = { disabled: el(id).disabled, text: el(id).textContent.trim() };
  const s = {};
  for (const id of status) if (el(id)) s[id] = { text: el(id).textContent, error: el(id).classList.contains('error') };
  return { buttons: b, status: s, folderDisabled: el('folder-input').disabled, log: window.__log.slice(from) };
}, [BUTTONS, STATUS, from]);

/** The facts the log implies, folded in order; each violation is an invariant's name and what
 *  was seen. */
function fold(facts, entries) {
  const broken = [];
  for (const e of entries) {
    if (e.dir === 'user') {
      const loads = ['folder-input', 'files-input', 'demo-button'];
      if (loads.includes(e.id)) facts.pendingStarts = 0; // a start clicked before new data is void
      if (e.type === 'click' && e.id === 'start') facts.pendingStarts++;
      if (e.type === 'change' && e.id === 'session-input') facts.pendingStarts++;
      if (e.type === 'click' && e.id === 'pause' && facts.run === 'paused') facts.run = 'active';
    } else if (e.dir === 'in') {
      if (e.type === 'started') {
        if (facts.run === 'active' && !e.resumed) broken.push(['one run at a time', 'a run started while another was active']);
        if (facts.pendingStarts === 0 && !e.resumed) broken.push(['no run without a start click', 'the engine started a run that no start click since the last data load asked for']);
        facts.pendingStarts = Math.max(0, facts.pendingStarts - 1);
        facts.run = 'active';
      }
      if (e.type === 'loaded') facts.result = false;
      if (e.type === 'checkpoint') facts.result = true;
      if (e.type === 'paused' || e.type === 'restored') facts.run = 'paused';
      if (['finished', 'cancelled', 'stopped', 'device-lost'].includes(e.type)) facts.run = 'ended';
      if (e.type === 'error' && facts.run === 'active') facts.run = 'ended';
    }
  }
  return broken;
}

/** The invariants on what the page shows, given the facts of the log. */
function check(snap, facts) {
  const broken = [];
  const { buttons: b, status: s } = snap;
  const nothingLoaded = s['data-status'].error || s['data-status'].text.trim() === '' || /^reading|^decoding/.test(s['data-status'].text);
  if (nothingLoaded && !b.start.disabled) broken.push(['nothing starts without data', `start is enabled while the data line reads "${s['data-status'].text}"`]);
  if (b.pause.text === 'resume' && facts.run !== 'paused') broken.push(['pause follows the run', `the pause button reads "resume" while the run is ${facts.run}`]);
  if (!b.cancel.disabled && facts.run !== 'active' && facts.run !== 'paused') broken.push(['cancel follows the run', `cancel is enabled while the run is ${facts.run}`]);
  for (const id of ['evaluate', 'audit', 'download']) {
    if (!b[id].disabled && (!facts.result || facts.run === 'active')) broken.push([`${id} needs a result`, `${id} is enabled with result=${facts.result}, run ${facts.run}`]);
  }
  for (const [id, x] of Object.entries(s)) if (x.error && x.text.trim() === '') broken.push(['no error without a cause', `${id} is an error with no text`]);
  if (/iteration|cancelled|paused|finished|starting/.test(s['data-status'].text)) broken.push(['status lines in their own panels', `the data line reads "${s['data-status'].text}"`]);
  if (/inside the patient folder|at least two classes|not inside a class folder|could not read/.test(s['run-status'].text)) broken.push(['status lines in their own panels', `the run line reads "${s['run-status'].text}"`]);
  if (/\b60 s elapsed|\b60 s left/.test(s['run-status'].text)) broken.push(['times read right', s['run-status'].text]);
  return broken;
}

/** Clicks `id` if it is enabled, as a user can; returns whether it was. */
const click = (page, id) => page.evaluate((id) => {
  const b = document.getElementById(id);
  if (b.disabled) return false;
  b.click();
  return true;
}, id);

const SETTINGS = [
  ['max_iterations', ['2', '4', '30', '0']],
  ['nets_per_iteration', ['1', '2', '0']],
  ['lenet_width', ['1', '17']],
  ['steps', ['2', '3']],
  ['seed', ['0', '7', '-1']],
  ['image_size', ['28', '16']],
];

async function runSeed(browser, seed, dirs) {
  const rand = random(seed);
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const context = await browser.newContext({ acceptDownloads: true });
  await context.addInitScript(LOGGER);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="1"]');
  // Short, cheap runs: the CPU, one worker, one network of width 1, three steps.
  await page.selectOption('#settings [name=backend]', 'cpu');
  for (const [k, v] of [['workers', 1], ['nets_per_iteration', 1], ['lenet_width', 1], ['steps', 3], ['max_iterations', 4]]) {
    await page.fill(`#settings [name=${k}]`, String(v));
    await page.dispatchEvent(`#settings [name=${k}]`, 'change');
  }
  const facts = { run: 'none', result: false, pendingStarts: 0 };
  let seen = 0;
  const trail = [];
  const verify = async (what) => {
    const snap = await snapshot(page, seen);
    seen += snap.log.length;
    const broken = fold(facts, snap.log).concat(check(snap, facts)).filter(([name]) => !IGNORE.has(name));
    if (errors.length) broken.push(['no uncaught error', errors.join('; ')]);
    if (broken.length) {
      const [name, detail] = broken[0];
      assert.fail(`seed ${seed}, after ${trail.length} actions (${trail.slice(-8).join(' → ')}), ${what}: invariant "${name}" broken: ${detail}`);
    }
  };
  const load = async (dir) => {
    if (await page.isDisabled('#folder-input')) return 'folder (disabled)';
    await page.setInputFiles('#folder-input', dir);
    return null;
  };
  const actions = [
    [2, 'demo', () => click(page, 'demo-button')],
    [2, 'good folder', () => load(dirs.good)],
    [1, 'nested folder', () => load(dirs.nested)],
    [1, 'one-class folder', () => load(dirs.oneClass)],
    [4, 'start', () => click(page, 'start')],
    [3, 'pause/resume', () => click(page, 'pause')],
    [2, 'cancel', () => click(page, 'cancel')],
    [1, 'evaluate', () => click(page, 'evaluate')],
    [1, 'audit', () => click(page, 'audit')],
    [1, 'download', () => click(page, 'download')],
    [1, 'save session', () => click(page, 'save-session')],
    [3, 'setting', async () => {
      const [name, values] = pick(SETTINGS);
      const v = pick(values);
      // The objective hides the fields it does not use: a user cannot type into them.
      if (!(await page.isVisible(`#settings [name=${name}]`))) return `${name} (hidden)`;
      await page.fill(`#settings [name=${name}]`, v);
      await page.dispatchEvent(`#settings [name=${name}]`, 'change');
      return `${name}=${v}`;
    }],
    [1, 'objective', async () => {
      const v = pick(['unrolled', 'matching']);
      await page.selectOption('#settings [name=objective]', v);
      return `objective ${v}`;
    }],
    [1, 'privacy', async () => {
      const v = pick(['off', 'off', '8', 'custom']);
      await page.selectOption('#settings [name=privacy]', v);
      return `privacy ${v}`;
    }],
  ];
  const total = actions.reduce((n, a) => n + a[0], 0);
  try {
    for (let k = 0; k < ACTIONS; k++) {
      let r = rand() * total;
      const [, name, act] = actions.find(([w]) => (r -= w) < 0);
      const result = await act();
      trail.push(typeof result === 'string' ? result : result === false ? `${name} (disabled)` : name);
      await page.waitForTimeout(Math.floor(rand() * 700));
      await verify(`after "${trail[trail.length - 1]}"`);
    }
    // Quiet: whatever was started is cancelled as soon as it can be (cancel is disabled while a
    // run starts); nothing stays "starting" for ever.
    const deadline = Date.now() + 120000;
    for (;;) {
      await click(page, 'cancel');
      await page.waitForTimeout(500);
      await verify('while settling');
      const text = await page.textContent('#run-status');
      const busy = await page.evaluate(() => /starting|auditing|training fresh|pausing|cancelling|resuming/.test(document.body.innerText) ||
        (!document.getElementById('pause').disabled && document.getElementById('pause').textContent.trim() === 'pause'));
      if (!busy) break;
      if (Date.now() > deadline) assert.fail(`seed ${seed}: still busy after 2 minutes of quiet (${trail.slice(-8).join(' → ')}): run line "${text}"`);
    }
    // Never stuck: from wherever the actions left it, a user who fixes the settings and loads a
    // good folder can start a run, and it finishes.
    for (const [k, v] of [['max_iterations', 2], ['nets_per_iteration', 1], ['lenet_width', 1], ['steps', 2], ['seed', 0], ['image_size', 28]]) {
      if (!(await page.isVisible(`#settings [name=${k}]`))) continue; // not the objective's
      await page.fill(`#settings [name=${k}]`, String(v));
      await page.dispatchEvent(`#settings [name=${k}]`, 'change');
    }
    await page.selectOption('#settings [name=privacy]', 'off');
    const lines = () => page.evaluate(() => ['data-status', 'settings-status', 'run-status', 'notice'].map((id) => `${id}: "${document.getElementById(id).textContent}"`).join('; '));
    const stuck = async (why) => assert.fail(`seed ${seed}: stuck after ${trail.slice(-8).join(' → ')}: ${why} (${await lines()})`);
    if (await page.isDisabled('#folder-input')) await stuck('the folder input is disabled with nothing under way');
    await page.setInputFiles('#folder-input', dirs.good);
    await page.waitForFunction(() => /12 images of 12 patients/.test(document.getElementById('data-status').textContent), null, { timeout: 60000 }).catch(() => stuck('the good folder did not load'));
    if (await page.isDisabled('#start')) await stuck('start is disabled with the data loaded and the settings valid');
    await click(page, 'start');
    await page.waitForFunction(() => /finished after 2 iterations/.test(document.getElementById('run-status').textContent), null, { timeout: 120000 }).catch(() => stuck('the run did not finish'));
    await verify('after the run that shows the page is not stuck');
  } finally {
    await context.close();
  }
  return trail;
}

test(`random user actions never break the page's invariants (seeds ${SEEDS.join(', ')}, ${ACTIONS} actions each)`, async () => {
  const dirs = folders();
  const browser = await launch({ webgpu: false });
  try {
    for (const seed of SEEDS) {
      const trail = await runSeed(browser, seed, dirs);
      const clicked = trail.filter((t) => !t.includes('(disabled)')).length;
      console.log(`seed ${seed}: ${trail.length} actions, ${clicked} on enabled controls`);
    }
  } finally {
    await browser.close();
  }
});
