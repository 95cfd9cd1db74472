// End-to-end tests of the built page (dist/) in headless Chromium: real patch files through the
// folder input, a real run, the evaluation, the download, bad input, and no network after load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync, readFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { deflateSync } from 'node:zlib';
import { join } from 'node:path';
import { serve, launch, open, setSetting, waitText, demoPage, ARTIFACTS } from './helpers.mjs';

const DEMO = new URL('../../demo/pneumonia-xray/', import.meta.url).pathname;
let server;
before(async () => { server = await serve(); });
after(() => server.close());

/** A folder of real patches (n per class, each class from a demo class) plus extra files. */
function patchFolder(n, extra = {}, classes = { normal: 'normal', pneumonia: 'pneumonia' }) {
  const root = mkdtempSync(join(tmpdir(), 'patches-'));
  for (const [c, source] of Object.entries(classes)) {
    mkdirSync(join(root, c));
    for (const f of readdirSync(join(DEMO, source)).slice(0, n)) cpSync(join(DEMO, source, f), join(root, c, f));
  }
  for (const [rel, bytes] of Object.entries(extra)) writeFileSync(join(root, rel), bytes);
  return root;
}

/** A valid 8-bit grey PNG `width` × `height` pixels (small on disk, zlib packs it). */
function greyPng(width, height = 1) {
  const crc = (buf) => {
    let c = ~0;
    for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
    return ~c >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const raw = Buffer.alloc((width + 1) * height);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

test('distils a folder of real patches on the CPU and downloads only the distilled artefacts', async () => {
  const png = readFileSync(join(DEMO, 'normal', readdirSync(join(DEMO, 'normal'))[0]));
  const root = patchFolder(40, { 'normal/notes.txt': 'not an image', 'pneumonia/cut.png': png.subarray(0, png.length >> 1) });
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await open(browser, server.url);
    await page.screenshot({ path: ARTIFACTS + 'before.png', fullPage: true });

    await page.setInputFiles('#folder-input', root);
    await waitText(page, '#data-status', /80 images of 80 patients in 2 classes/);
    const skipped = await page.textContent('#skipped');
    assert.match(skipped, /notes\.txt: not an image/);
    assert.match(skipped, /cut\.png: corrupt or truncated/);
    assert.equal(await page.locator('.thumb').count(), 16);

    await page.selectOption('#settings [name=backend]', 'cpu');
    await setSetting(page, 'max_iterations', 6);
    await page.click('#start');
    await waitText(page, '#run-status', /iteration [1-5] of 6/);
    assert.equal(await page.isDisabled('#start'), true, 'start is disabled while running');
    // The UI thread stays responsive while the worker computes.
    for (let i = 0; i < 3; i++) {
      const t = Date.now();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
      assert.ok(Date.now() - t < 1000, `a frame took ${Date.now() - t} ms during the run`);
    }
    await page.screenshot({ path: ARTIFACTS + 'during.png', fullPage: true });
    await waitText(page, '#run-status', /finished after 6 iterations/);
    assert.equal(await page.getAttribute('#backend-label', 'data-backend'), 'cpu');
    assert.equal(await page.locator('#grid canvas').count(), 20);

    await page.click('#evaluate');
    await page.waitForSelector('#eval-table:not([hidden])', { timeout: 600000 });
    assert.equal(await page.locator('#eval-table tbody tr').count(), 3);
    // Balanced accuracy, accuracy, ROC AUC; the distilled program class by class, and its
    // confusion matrix as a 2 × 2 heat map whose rows add up to 100 %.
    assert.equal(await page.locator('#eval-table tbody tr:first-child td').count(), 5);
    const confusion = await page.$$eval('#confusion tr', (rows) => rows.slice(1).map((r) => [...r.querySelectorAll('td')].map((td) => parseFloat(td.textContent))));
    assert.equal(confusion.length, 2);
    for (const row of confusion) assert.ok(row.length === 2 && Math.abs(row[0] + row[1] - 100) <= 1, `a row of the confusion matrix: ${row}`);
    assert.match(await page.textContent('#eval-classes'), /normal: recall \d+\.\d%, precision .*; pneumonia: recall \d+\.\d%/);
    // 11 and 9 test patches (each patch a patient, on the test side with probability 0.2): the
    // page says these numbers cannot mean much.
    assert.match(await page.textContent('#eval-status'), /on 20 held-out patches \(11 \/ 9 by class; ± is the sample std over the networks\); a class has only 9 test image\(s\) \(under 20\): these accuracies are too uncertain to mean much/);
    const split = (await page.textContent('#data-status')).match(/(\d+) images \((\d+) patients\) to distil from, (\d+) \((\d+)\) kept back for the privacy audit, 20 \(20\) held out/);
    assert.ok(split && split[1] === split[2] && split[3] === split[4] && Number(split[1]) + Number(split[3]) === 60, `the split: ${split}`);
    // The privacy audit follows the evaluation: verdict, attack table, and the local gallery of
    // each distilled image with its nearest real patches.
    await page.waitForSelector('#audit-panel:not([hidden])', { timeout: 600000 });
    // 16 holdout patches in all (each patch to the holdout with probability 0.2): never a green
    // "no evidence" from so few.
    assert.match(await page.textContent('#audit-verdict'), /^Verdict: (too few images to judge|leakage detected)\.$/);
    assert.notEqual(await page.getAttribute('#audit-verdict', 'class'), 'ok');
    assert.doesNotMatch(await page.textContent('#audit-section'), /anonymous/i);
    assert.equal(await page.locator('#audit-attack tbody tr').count(), 2);
    assert.equal(await page.locator('#audit-gallery tbody tr').count(), 20);
    assert.equal(await page.locator('#audit-gallery canvas').count(), 100);
    assert.match(await page.textContent('#audit-summary'), /44 members, 16 holdout patches/);
    await page.screenshot({ path: ARTIFACTS + 'after.png', fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const zip = ARTIFACTS + 'result.zip';
    await download.saveAs(zip);
    const names = JSON.parse(execFileSync('python3', ['-c', 'import json,sys,zipfile; print(json.dumps(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))', zip]));
    const expected = ['audit.json', 'audit.png', 'distilled.safetensors', 'labels.csv', 'manifest.json', ...Array.from({ length: 20 }, (_, i) => `previews/image_${String(i).padStart(4, '0')}.png`)].sort();
    assert.deepEqual(names, expected);
    const manifest = JSON.parse(execFileSync('python3', ['-c', 'import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read("manifest.json").decode())', zip]));
    assert.equal(manifest.iterations_run, 6);
    // The page's caveat on so few test patches is the archive's too.
    assert.ok(manifest.warnings.some((w) => /a class has only 9 test image\(s\) \(under 20\): these accuracies are too uncertain to mean much/.test(w)), `warnings: ${manifest.warnings}`);
    for (const k of ['accuracy', 'balanced_accuracy', 'per_class_recall', 'per_class_precision', 'auc', 'confusion']) assert.ok(k in manifest.metrics.distilled, `manifest metrics hold ${k}`);
    assert.ok(manifest.holdout_counts.length === 2 && manifest.holdout_counts[0] + manifest.holdout_counts[1] === 16, `holdout: ${manifest.holdout_counts}`);
    const audit = JSON.parse(execFileSync('python3', ['-c', 'import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read("audit.json").decode())', zip]));
    assert.equal(audit.images.length, 20);
    assert.equal(audit.verdict, await page.evaluate(() => window.anondistill.audit.verdict));
    const longest = (v) => (Array.isArray(v) ? Math.max(v.length, ...v.map(longest)) : v && typeof v === 'object' ? Math.max(0, ...Object.values(v).map(longest)) : 0);
    assert.ok(longest(audit) < 28 * 28, 'no image-sized array in audit.json');
    assert.equal(audit.neighbours, undefined);
    // No file name (the demo's are train_NNNNN.png) in any text the archive holds.
    const read = (entry) => execFileSync('python3', ['-c', 'import sys,zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())', zip, entry]).toString();
    for (const entry of ['manifest.json', 'labels.csv', 'audit.json']) assert.doesNotMatch(read(entry), /train_\d/, `a file name in ${entry}`);
    assert.deepEqual(late, [], 'network requests after the page was ready');
  } finally {
    await browser.close();
  }
});

test('the static server answers a malformed path with 404 and keeps serving', async () => {
  assert.equal((await fetch(`${server.url}%`)).status, 404); // it crashed on decodeURIComponent
  assert.equal((await fetch(server.url)).status, 200);
});

// The positive control of every `late` check above and below: a request made from inside the
// engine worker (which holds the user's files) is listed by the same check when the page's policy
// is switched off, and reaches a listener on another port; with the policy, nothing arrives.
test('no worker can reach the network: requests from the engine worker are blocked, and seen without the policy', async () => {
  const hits = [];
  const { createServer } = await import('node:http');
  const listener = createServer((req, res) => { hits.push(`${req.method} ${req.url}`); res.writeHead(200, { 'access-control-allow-origin': '*' }).end('ok'); });
  listener.on('upgrade', (req, socket) => { hits.push(`UPGRADE ${req.url}`); socket.destroy(); });
  await new Promise((r) => listener.listen(0, '127.0.0.1', r));
  const target = `127.0.0.1:${listener.address().port}`;
  const attempt = async (page) => {
    assert.equal(page.workers().length >= 1, true, 'the engine worker is visible to the test');
    // Each worker (the engine and the helpers it preloads) tries four ways out: to another port
    // (a GET, a no-cors POST, a WebSocket) and back to the page's own host.
    return Promise.all(page.workers().map((w) => w.evaluate(async (t) => {
      const tries = [
        fetch(`http://${t}/get`).then(() => 'sent', () => 'blocked'),
        fetch(`http://${t}/post`, { method: 'POST', mode: 'no-cors', body: 'patient data' }).then(() => 'sent', () => 'blocked'),
        fetch(`${self.location.origin}/same-origin`, { method: 'POST', body: 'patient data' }).then(() => 'sent', () => 'blocked'),
        new Promise((resolve) => {
          try {
            const ws = new WebSocket(`ws://${t}/socket`);
            ws.onerror = () => resolve('tried');
            ws.onopen = () => resolve('sent');
          } catch (e) {
            resolve('blocked');
          }
        }),
      ];
      return Promise.all(tries);
    }, target)));
  };
  const browser = await launch({ webgpu: false });
  try {
    const closed = await open(browser, server.url);
    const results = await attempt(closed.page);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(results.length >= 4, `the engine worker and its three preloaded helpers are listed (${results.length})`);
    for (const r of results) assert.deepEqual(r.slice(0, 3), ['blocked', 'blocked', 'blocked']);
    assert.deepEqual(hits, [], 'nothing reached the listener');
    assert.deepEqual(closed.late, []);

    const open_ = await open(browser, server.url, { bypassCSP: true });
    const control = await attempt(open_.page);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(control[0].slice(0, 3), ['sent', 'sent', 'sent'], 'without the policy the engine worker reaches the listener');
    for (const what of ['GET /get', 'POST /post', 'UPGRADE /socket']) {
      assert.equal(hits.filter((h) => h === what).length, control.length, `${what} from each worker reached the listener: ${hits}`);
    }
    for (const end of ['/get', '/post', '/same-origin']) assert.ok(open_.late.some((u) => u.endsWith(end)), `the check saw ${open_.late}`);
  } finally {
    await browser.close();
    listener.close();
  }
});

test('bad input gets a clear message and the page keeps working', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await open(browser, server.url);
    await page.setInputFiles('#folder-input', patchFolder(5, {}, { 'only-one': 'normal' }));
    await waitText(page, '#data-status', /at least two classes/);
    assert.equal(await page.getAttribute('#data-status', 'class'), 'error');
    // A corrupt file, an image 20,000 pixels wide, and a 65 MiB file.
    // Also a file at the top of the folder, and one in a folder inside a class folder, which is
    // a patient folder (both were taken as classes once, the nested one named 'left').
    const folder = patchFolder(5, { 'normal/x.bmp': 'BM garbage', 'normal/wide.png': greyPng(20000), 'pneumonia/dot.png': greyPng(2, 2), 'README.md': '# notes' });
    execFileSync('truncate', ['-s', '65M', join(folder, 'pneumonia', 'huge.png')]);
    mkdirSync(join(folder, 'normal', 'left'));
    cpSync(join(DEMO, 'normal', readdirSync(join(DEMO, 'normal'))[0]), join(folder, 'normal', 'left', 'nested.png'));
    await page.setInputFiles('#folder-input', folder);
    await waitText(page, '#data-status', /11 images of 11 patients in 2 classes/);
    const skipped = await page.textContent('#skipped');
    assert.match(skipped, /x\.bmp: /);
    assert.match(skipped, /wide\.png: image too large/);
    assert.match(skipped, /huge\.png: file is 65\.0 MiB, above the 64 MiB limit/);
    assert.match(skipped, /dot\.png: image too small \(2 × 2 pixels; a patch needs at least 8 a side/);
    assert.match(skipped, /README\.md: not inside a class folder/);
    assert.doesNotMatch(skipped, /nested\.png/);
    assert.deepEqual(await page.$$eval('#classes input', (inputs) => inputs.map((i) => i.value)), ['normal', 'pneumonia']);
    // Thumbnails only of files the engine used: 6 and 5, none of the refused ones.
    assert.equal(await page.locator('#classes img.thumb').count(), 11);
    assert.equal(await page.isDisabled('#start'), false);
    // 11 training images at most, 20 distilled: said before the run.
    assert.match(await page.textContent('#data-cautions'), /Before you start: the distilled set will have 20 images, as many as the \d+ training images or more/);
    // Settings are checked as typed against the engine's own table (config::LIMITS): the
    // field as the page labels it, the value as typed, the range; start waits for a fix.
    const limits = await page.evaluate(() => window.anondistill.limits);
    for (const [key, l] of Object.entries(limits)) {
      const input = page.locator(`#settings [name=${key}]`);
      assert.deepEqual([Number(await input.getAttribute('min')), Number(await input.getAttribute('max'))], [l.min, l.max], key);
    }
    for (const [name, typed, message] of [
      ['lenet_width', '0', /^LeNet width = 0 is outside 1 to 16$/],
      ['max_iterations', '100000001', /^iterations = 100000001 is outside 1 to 100,000,000$/],
      ['workers', '1.5', /^CPU workers = 1\.5 is not a whole number$/],
      ['seed', '-3', /^seed = -3 is outside 0 to 9,007,199,254,740,991$/],
      ['nets_per_iteration', '', /^networks per iteration is empty$/],
    ]) {
      await page.fill(`input[name=${name}]`, typed);
      await waitText(page, '#settings-status', message);
      assert.equal(await page.isDisabled('#start'), true, `start with ${name} = "${typed}"`);
      assert.equal(await page.getAttribute('#settings-status', 'class'), 'error');
      await page.fill(`input[name=${name}]`, limits[name].min === 0 ? '0' : '1');
    }
    // Letters typed into a number field: the browser hands the page "", and says it was bad.
    await page.locator('input[name=steps]').fill('');
    await page.locator('input[name=steps]').pressSequentially('3e');
    await waitText(page, '#settings-status', /^steps: what is typed is not a number$/);
    await page.fill('input[name=steps]', '10');
    await waitText(page, '#settings-status', /^$/);
    assert.equal(await page.isDisabled('#start'), false);
    // Nothing was distilled: nothing to evaluate, audit or download.
    for (const b of ['#evaluate', '#audit', '#download']) assert.equal(await page.isDisabled(b), true, b);
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});

/** Loading the patient folders takes seconds: a wrong count fails within a minute, not ten. */
const LOAD_MS = 60000;

/** `root/<class>/p<k>/<j>.png`: 12 patients a class with 3 real patches each; p10 and p11 have
 * patches of both classes (22 patients, 72 images). */
function patientFolder() {
  const root = mkdtempSync(join(tmpdir(), 'patients-'));
  for (const [c, first] of [['normal', 0], ['pneumonia', 10]]) {
    const files = readdirSync(join(DEMO, c));
    for (let k = first; k < first + 12; k++) {
      mkdirSync(join(root, c, `p${k}`), { recursive: true });
      for (let j = 0; j < 3; j++) cpSync(join(DEMO, c, files[3 * (k - first) + j]), join(root, c, `p${k}`, `${j}.png`));
    }
  }
  return root;
}

test('patients from folders, a pattern and a table; a separate test set; a one-sided result is flagged', async () => {
  const root = patientFolder();
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await open(browser, server.url);
    await page.setInputFiles('#folder-input', root);
    await waitText(page, '#data-status', /72 images of 22 patients in 2 classes, split by patient/, LOAD_MS);
    assert.deepEqual(await page.$$eval('#classes .class-row span', (s) => s.map((x) => x.textContent)), ['36 images, 12 patients', '36 images, 12 patients']);
    // The splits' patients add up to the 22 found: none is counted on two sides.
    const split = (await page.textContent('#data-status')).match(/\((\d+) patients\) to distil from, \d+ \((\d+)\) kept back .*, \d+ \((\d+)\) held out/);
    assert.equal(Number(split[1]) + Number(split[2]) + Number(split[3]), 22, split[0]);

    // A folder inside a patient folder is refused by name; what was loaded stays loaded.
    const deep = patientFolder();
    mkdirSync(join(deep, 'normal', 'p3', 'left'));
    cpSync(join(deep, 'normal', 'p3', '0.png'), join(deep, 'normal', 'p3', 'left', 'x.png'));
    await page.setInputFiles('#folder-input', deep);
    await waitText(page, '#data-status', /normal\/p3\/left is a folder inside the patient folder normal\/p3/, LOAD_MS);
    assert.equal(await page.getAttribute('#data-status', 'class'), 'error');
    // Nothing of the previous folder stays on screen, and nothing can start.
    assert.equal(await page.locator('#classes .class-row').count(), 0);
    assert.equal(await page.isDisabled('#start'), true);
    await page.setInputFiles('#folder-input', root);
    await waitText(page, '#data-status', /72 images of 22 patients/, LOAD_MS);

    // A pattern wins over the folders: the first digit of each folder's number, 10 patients. It
    // is searched in the path below the picked folder, as the command line does: anchored at
    // the class folder here.
    await page.click('#patients-box summary');
    await page.fill('#group-pattern', '^[a-z]+/p(\\d)');
    await page.dispatchEvent('#group-pattern', 'change');
    await waitText(page, '#data-status', /72 images of 10 patients/, LOAD_MS);
    await page.fill('#group-pattern', '(p)(\\d)');
    await page.dispatchEvent('#group-pattern', 'change');
    await waitText(page, '#data-status', /the patient pattern '\(p\)\(\\d\)' has 2 capture groups/, LOAD_MS);
    await page.fill('#group-pattern', '');
    await page.dispatchEvent('#group-pattern', 'change');
    await waitText(page, '#data-status', /72 images of 22 patients/, LOAD_MS);

    // A file,patient table: 4 sites; then one that names a file that is not there.
    const rows = (extra) => 'file,patient\n' + ['normal', 'pneumonia'].flatMap((c, i) => Array.from({ length: 12 }, (_, k) => k + 10 * i)
      .flatMap((k) => [0, 1, 2].map((j) => `${c}/p${k}/${j}.png,site${k % 4}`))).concat(extra).join('\n');
    const table = (text) => ({ name: 'groups.csv', mimeType: 'text/csv', buffer: Buffer.from(text) });
    await page.setInputFiles('#groups-input', table(rows([])));
    await waitText(page, '#data-status', /72 images of 4 patients/, LOAD_MS);
    await page.setInputFiles('#groups-input', table(rows(['normal/p99/0.png,site1'])));
    await waitText(page, '#data-status', /the patient table names 1 file\(s\) that are not in the data: 'normal\/p99\/0\.png'/, LOAD_MS);
    await page.click('#groups-clear');
    await waitText(page, '#data-status', /72 images of 22 patients/, LOAD_MS);

    // A test folder whose two classes hold the same normal patches: whatever the program
    // predicts, the two rows of its confusion matrix are the same, and it cannot get both right.
    const test = patchFolder(10, {}, { normal: 'normal', pneumonia: 'normal' });
    await page.setInputFiles('#test-input', test);
    await waitText(page, '#data-status', /92 images of 42 patients.*20 \(20\) in the test folder for evaluation/, LOAD_MS);
    await page.selectOption('#settings [name=backend]', 'cpu');
    await setSetting(page, 'max_iterations', 6);
    await page.click('#start');
    await waitText(page, '#run-status', /finished after 6 iterations/);
    await page.click('#evaluate');
    await page.waitForSelector('#eval-table:not([hidden])', { timeout: 600000 });
    assert.match(await page.textContent('#eval-status'), /on 20 held-out patches \(10 \/ 10 by class/);
    const confusion = await page.$$eval('#confusion tr', (r) => r.slice(1).map((row) => [...row.querySelectorAll('td')].map((td) => td.textContent)));
    assert.equal(confusion.length, 2);
    assert.deepEqual(confusion[0], confusion[1]);
    assert.match(await page.textContent('#eval-warnings'), /recall of "(normal|pneumonia)" \(\d+\.\d%\) is far below that of the best class/);
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});

test('a file changed on disk after it was picked is named, and picking the folder again recovers', async () => {
  const root = patchFolder(20);
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await open(browser, server.url);
    await page.setInputFiles('#folder-input', root);
    await waitText(page, '#data-status', /40 images of 40 patients in 2 classes/);
    // Start reads the files again; the browser refuses a file whose modification time changed.
    const name = readdirSync(join(root, 'normal'))[0];
    const victim = join(root, 'normal', name);
    writeFileSync(victim, readFileSync(victim));
    utimesSync(victim, new Date(), new Date(Date.now() + 5000));
    await page.selectOption('#settings [name=backend]', 'cpu');
    await setSetting(page, 'max_iterations', 2);
    await page.click('#start');
    const message = new RegExp(`could not read .*normal/${name.replace('.', '\\.')} .*Pick the folder again`);
    await waitText(page, '#data-status', message);
    assert.equal(await page.textContent('#run-status'), 'not started: the data could not be loaded (see Data)');
    assert.equal(await page.isEnabled('#start'), false);
    await page.setInputFiles('#folder-input', root);
    await waitText(page, '#data-status', /40 images of 40 patients in 2 classes/);
    await page.click('#start');
    await waitText(page, '#run-status', /finished after 2 iterations/);
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});

test('WebGPU runs the same distillation as the CPU (SwiftShader adapter)', async () => {
  const browser = await launch({ webgpu: true });
  const run = async (page, backend) => {
    await page.selectOption('#settings [name=backend]', backend);
    await page.click('#start');
    // The GPU's first chunk compiles shaders (tens of seconds on SwiftShader): the page says so.
    if (backend === 'webgpu') await waitText(page, '#run-status', /preparing the GPU/);
    await waitText(page, '#run-status', /finished after 2 iterations|stopped/);
    return page.evaluate(() => ({ losses: [...window.anondistill.losses], d: window.anondistill.distilled, label: document.querySelector('#backend-label').dataset.backend, status: document.querySelector('#run-status').textContent }));
  };
  try {
    const { page, late } = await open(browser, server.url);
    await page.click('#demo-button');
    await waitText(page, '#data-status', /400 images of 400 patients in 2 classes/);
    await setSetting(page, 'max_iterations', 2);
    // One network per iteration (the default is 4): SwiftShader takes ~13 s per meta-step here.
    await setSetting(page, 'nets_per_iteration', 1);
    const gpu = await run(page, 'webgpu');
    await page.screenshot({ path: ARTIFACTS + 'webgpu.png', fullPage: true });
    assert.equal(gpu.label, 'webgpu', gpu.status);
    assert.match(gpu.status, /finished after 2 iterations/);
    const cpu = await run(page, 'cpu');
    assert.equal(cpu.label, 'cpu');
    // SwiftShader is a software adapter: "auto" does not take it on its own (before, the demo's
    // default run showed about 615 minutes left where the CPU took 2), and says so.
    const auto = await run(page, 'auto');
    assert.equal(auto.label, 'cpu', auto.status);
    assert.match(await page.textContent('#notice'), /only WebGPU adapter is a software one/);
    assert.deepEqual(auto.losses, cpu.losses);
    for (let i = 0; i < 2; i++) {
      assert.ok(Math.abs(gpu.losses[i] - cpu.losses[i]) < 1e-4 * Math.abs(cpu.losses[i]), `loss ${i}: ${gpu.losses[i]} vs ${cpu.losses[i]}`);
    }
    // After two Adam steps each pixel has moved by about ±0.01 per step along the sign of its
    // hyper-gradient: equal images mean the two backends' hyper-gradients agree in sign.
    const far = gpu.d.images.filter((v, k) => Math.abs(v - cpu.d.images[k]) > 1e-3).length;
    assert.ok(far <= 0.01 * cpu.d.images.length, `${far} of ${cpu.d.images.length} pixels differ`);
    const lrDiff = Math.max(...gpu.d.lrs.map((v, k) => Math.abs(v - cpu.d.lrs[k])));
    assert.ok(lrDiff < 1e-5, `learning rates differ by ${lrDiff}`);
    assert.ok(Math.max(...cpu.d.lrs.map((v) => Math.abs(v - 0.02))) > 1e-4, 'the learning rates moved');
    console.log(`webgpu vs cpu: losses ${gpu.losses} vs ${cpu.losses}; ${far} pixels apart; lr diff ${lrDiff}`);
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});

test('a private run says what the noise costs before it starts, shares its iterations with a helper until it fails, counts epsilon and keeps the audit out of the archive', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page } = await demoPage(browser, server.url, { backend: 'cpu', iterations: 6, workers: 2 });
    const privacy = page.locator('#settings [name=privacy]');
    await privacy.selectOption('custom');
    // Outside the range where the method can work, refused with the reason (it was accepted at
    // 1e9 and its noise called "moderate"; 0.01, the field's minimum then, failed in the engine).
    for (const typed of ['-1', '0.01', '1e9']) {
      await page.locator('#settings [name=epsilon]').fill(typed);
      await waitText(page, '#settings-status', new RegExp(`^epsilon = ${typed.replace('.', '\\.')} is outside 0\\.1 to 20: below 0\\.1 the noise drowns the data`));
      assert.equal(await page.isDisabled('#start'), true);
    }
    assert.equal(await page.isVisible('#epsilon-label'), true);
    await privacy.selectOption('4');
    // The epsilon field shows only for "another epsilon" (the stylesheet showed it always).
    assert.equal(await page.isVisible('#epsilon-label'), false);
    await waitText(page, '#privacy-plan', /noise multiplier sigma/);
    const plan = await page.textContent('#privacy-plan');
    // The demo: every patch its own patient, fewer than the batch, so every iteration samples
    // all of them (rate 1) and the noise is large for so few: the page says so before the run.
    assert.match(plan, /Differential privacy per image: epsilon 4 at delta 1\.0e-5 over 6 iterations\. Each iteration samples each of the \d+ training images with probability 1 /);
    assert.match(plan, /What the noise costs: each iteration adds discrete Gaussian noise of standard deviation [\d.]+ to each of the \d+ coordinates .* That is a lot: the noise outweighs/);
    assert.match(plan, /Not covered: the number of training images/);
    await page.click('#start');
    // Shared with a helper for two iterations at least; then the helper fails, its iteration is
    // dropped and the run carries on in this worker to the planned end.
    await page.waitForFunction(() => window.anondistill.checkpoint && window.anondistill.checkpoint.iterations >= 2, null, { timeout: 600000 });
    assert.equal(await page.getAttribute('#backend-label', 'data-workers'), '2', 'a private run shares its iterations');
    await page.evaluate(() => window.anondistill.worker.postMessage({ type: 'fail-helper' }));
    await waitText(page, '#notice', /a helper worker failed: a worker was handed data that do not fit this run: network weights: \d+ values where \d+ were expected; carrying on in one worker/, 120000);
    await waitText(page, '#run-status', /finished after 6 iterations/);
    // The members' loss without noise is never shown in a private run.
    assert.equal(await page.evaluate(() => window.anondistill.losses.length), 0, 'no loss plotted in a private run');
    assert.match(await page.textContent('#run-status'), /loss not shown: in a private run it is the members' loss without noise/);
    const spent = await page.evaluate(() => window.anondistill.epsilonSpent);
    assert.ok(spent > 3.5 && spent <= 4, `epsilon spent after the planned iterations: ${spent}`);
    assert.match(await page.textContent('#privacy-spent'), /^Spent so far: epsilon [\d.]+ of 4\.$/);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const zip = ARTIFACTS + 'private.zip';
    await download.saveAs(zip);
    const names = JSON.parse(execFileSync('python3', ['-c', 'import json,sys,zipfile; print(json.dumps(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))', zip]));
    assert.ok(!names.includes('audit.json') && names.includes('distilled.safetensors'), `archive: ${names}`);
    const manifest = JSON.parse(execFileSync('python3', ['-c', 'import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read("manifest.json").decode())', zip]));
    assert.equal(manifest.privacy.unit, 'image');
    assert.equal(manifest.privacy.iterations, 6);
    assert.ok(Math.abs(manifest.privacy.epsilon - spent) < 1e-9, `manifest epsilon ${manifest.privacy.epsilon}, page ${spent}`);
    assert.equal(manifest.holdout_counts.length, 0);
    assert.equal(manifest.metrics, null);
    assert.ok(!JSON.stringify(manifest.warnings).includes('audit'), `nothing of the audit in a private archive: ${manifest.warnings}`);
  } finally {
    await browser.close();
  }
});

test('distribution matching: the objective picks its fields, a private run draws its releases then matches them, its session resumes exactly, and the archive records the recipe', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await demoPage(browser, server.url, { backend: 'cpu', iterations: 200, workers: 2 });
    const iterations = () => page.inputValue('#settings [name=max_iterations]');
    const objective = page.locator('#settings [name=objective]');
    // The iterations follow the objective while they hold its default; the replay's own fields
    // hide for matching.
    await objective.selectOption('matching');
    assert.equal(await iterations(), '1000');
    assert.equal(await page.isVisible('#settings [name=epochs]'), false);
    assert.equal(await page.isVisible('#settings [name=nets_per_iteration]'), false);
    assert.equal(await page.isVisible('#draws-label'), false, 'releases only with privacy on');
    await objective.selectOption('unrolled');
    assert.equal(await iterations(), '200');
    assert.equal(await page.isVisible('#settings [name=epochs]'), true);
    await objective.selectOption('matching');
    await setSetting(page, 'max_iterations', 10);
    await page.selectOption('#settings [name=privacy]', '8');
    assert.equal(await page.isVisible('#draws-label'), true);
    await setSetting(page, 'draws', 0);
    await waitText(page, '#settings-status', /^releases = 0 is outside 1 to 100,000/);
    assert.equal(await page.isDisabled('#start'), true);
    await setSetting(page, 'draws', 5);
    await waitText(page, '#privacy-plan', /over 5 releases/);
    const plan = await page.textContent('#privacy-plan');
    assert.match(plan, /epsilon 8 at delta 1\.0e-5 over 5 releases\. Each release draws a random embedding network, samples each of the \d+ training images with probability/);
    assert.match(plan, /matched to the releases for 10 iterations, which read no image and spend nothing more/);
    assert.match(plan, /What the noise costs: each release adds discrete Gaussian noise/);

    // The status lines as the run goes: the releases, then the matching.
    await page.evaluate(() => {
      window.runLines = [];
      new MutationObserver(() => window.runLines.push(document.getElementById('run-status').textContent)).observe(document.getElementById('run-status'), { childList: true, characterData: true, subtree: true });
    });
    await page.click('#start');
    await waitText(page, '#run-status', /matching iteration [1-6] of 10/);
    await page.click('#pause');
    await waitText(page, '#run-status', /paused at iteration/);
    assert.equal(await page.getAttribute('#backend-label', 'data-workers'), '1', 'a matching iteration is not shared');
    assert.equal(await page.isVisible('#lr-plot'), false, 'no learning rates are learned');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-session')]);
    const file = ARTIFACTS + 'matching-session.safetensors';
    await download.saveAs(file);
    const header = JSON.parse(execFileSync('python3', ['-c', 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(b[8:8+n].decode())', file]));
    assert.deepEqual(header['matching.releases'].shape.slice(0, 1), [5], 'the session carries the five releases');
    await page.click('#pause');
    await waitText(page, '#run-status', /finished after 15 iterations/);
    const lines = await page.evaluate(() => window.runLines);
    assert.ok(lines.some((t) => /^release [1-4] of 5, then 10 matching iterations · no loss yet: the images move once the releases are drawn/.test(t)), lines.join('\n'));
    assert.ok(lines.some((t) => /^matching iteration \d+ of 10, after 5 releases \(no patient read\) · loss \d+\.\d+/.test(t)), lines.join('\n'));
    assert.equal(await page.evaluate(() => window.anondistill.losses.length), 10, 'a loss for each matching iteration, none for the releases');
    const expected = await page.evaluate(() => window.anondistill.distilled.images);

    const [archive] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const zip = ARTIFACTS + 'matching-private.zip';
    await archive.saveAs(zip);
    const manifest = JSON.parse(execFileSync('python3', ['-c', 'import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read("manifest.json").decode())', zip]));
    assert.equal(manifest.config.objective, 'matching');
    assert.ok(manifest.recipe && manifest.recipe.epochs > 0, `the recipe: ${JSON.stringify(manifest.recipe)}`);
    assert.equal(manifest.privacy.iterations, 5);
    assert.ok(manifest.privacy.epsilon > 0 && manifest.privacy.epsilon <= 8, `epsilon ${manifest.privacy.epsilon}`);
    assert.deepEqual(late, []);

    // The session continues in a fresh page from the saved releases alone, to the same images.
    const { page: second } = await demoPage(browser, server.url, { backend: 'cpu', iterations: 200 });
    await second.setInputFiles('#session-input', file);
    await waitText(second, '#run-status', /finished after 15 iterations/);
    assert.equal(await second.inputValue('#settings [name=objective]'), 'matching', 'the saved settings are restored');
    assert.match(await second.textContent('#notice'), /Resuming a private session continues its plan/);
    assert.deepEqual(await second.evaluate(() => window.anondistill.distilled.images), expected, 'the resumed run ends where the uninterrupted one does');

    // Without privacy, evaluated the way a receiver trains: the set and the subset by the recipe.
    await page.selectOption('#settings [name=privacy]', 'off');
    await page.click('#start');
    await waitText(page, '#run-status', /finished after 10 iterations/);
    await page.click('#evaluate');
    await page.waitForSelector('#eval-table:not([hidden])', { timeout: 600000 });
    const table = await page.textContent('#eval-table');
    assert.match(table, /distilled set \(trained by its recipe\)\d+\.\d%/);
    assert.match(table, /random real subset of the same size \(the same recipe, lr 0\.001\)/);
  } finally {
    await browser.close();
  }
});

test('pause holds the run and resume finishes it (on the burn-ndarray fallback)', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page } = await demoPage(browser, server.url, { backend: 'ndarray', iterations: 8 });
    await page.click('#start');
    await waitText(page, '#run-status', /iteration [2-7] of 8/);
    await page.click('#pause');
    await waitText(page, '#run-status', /paused at iteration [2-7]$/);
    const held = await page.textContent('#run-status');
    await page.waitForTimeout(2000);
    assert.equal(await page.textContent('#run-status'), held, 'nothing ran while paused');
    assert.equal(await page.textContent('#pause'), 'resume');
    await page.click('#pause');
    await waitText(page, '#run-status', /finished after 8 iterations/);
    assert.equal(await page.evaluate(() => window.anondistill.losses.length), 8);
    assert.equal(await page.getAttribute('#backend-label', 'data-backend'), 'ndarray');
    assert.match(await page.textContent('#backend-label'), /burn-ndarray/);
  } finally {
    await browser.close();
  }
});

test('helper workers share the networks of each iteration and distil exactly what one worker does', async () => {
  const browser = await launch({ webgpu: false });
  // Four networks per iteration over three workers: this one takes networks 0 and 3, each helper
  // one; then the same run in one worker.
  const run = async (workers) => {
    const { page, late } = await demoPage(browser, server.url, { backend: 'cpu', iterations: 4, nets: 4, workers });
    await page.click('#start');
    await waitText(page, '#run-status', /finished after 4 iterations/);
    const label = await page.textContent('#backend-label');
    assert.deepEqual(late, []);
    return { label, workers: await page.getAttribute('#backend-label', 'data-workers'), ...(await page.evaluate(() => ({ losses: [...window.anondistill.losses], images: [...window.anondistill.distilled.images], lrs: [...window.anondistill.distilled.lrs] }))) };
  };
  try {
    const shared = await run(3);
    assert.equal(shared.workers, '3');
    assert.match(shared.label, /burn-flex\), 3 workers/);
    const alone = await run(1);
    assert.equal(alone.workers, '1');
    assert.equal(shared.losses.length, 4);
    assert.deepEqual(shared.losses, alone.losses, 'the same outer losses');
    assert.deepEqual(shared.lrs, alone.lrs, 'the same learning rates');
    assert.deepEqual(shared.images, alone.images, 'the same images, bit for bit');
  } finally {
    await browser.close();
  }
});

// A 6-iteration demo run in 2 workers whose helper is broken by the worker's test hook `hook`
// after 2 iterations: the page shows `notice` and the run ends with the images of one worker.
async function helperLostRun(hook, notice) {
  const browser = await launch({ webgpu: false });
  const run = async (workers, breakHelper) => {
    const { page } = await demoPage(browser, server.url, { backend: 'cpu', iterations: 6, nets: 4, workers });
    await page.click('#start');
    if (breakHelper) {
      await page.waitForFunction(() => window.anondistill.checkpoint && window.anondistill.checkpoint.iterations >= 2, null, { timeout: 600000 });
      await page.evaluate((m) => window.anondistill.worker.postMessage(m), hook);
      await waitText(page, '#notice', notice, 120000);
    }
    await waitText(page, '#run-status', /finished after 6 iterations/);
    return page.evaluate(() => [...window.anondistill.distilled.images]);
  };
  try {
    const broken = await run(2, true);
    assert.deepEqual(broken, await run(1, false), 'the same images as in one worker');
  } finally {
    await browser.close();
  }
}

test('a helper worker that fails is dropped and the run ends where one worker ends', () =>
  helperLostRun({ type: 'fail-helper' }, /a helper worker failed: a worker was handed data that do not fit this run: network weights: \d+ values where \d+ were expected; carrying on in one worker/));

test('a helper worker that stops without a word is given up on and the run ends where one worker ends', () =>
  helperLostRun({ type: 'silence-helper', waitMs: 3000 }, /a helper worker stopped answering \(no reply in 3 s\); carrying on in one worker/));

test('cancel ends its run before the next one starts, which then ends as a clean run', async () => {
  // Before: the cancelled run's loop carried on into the next run (2 workers: the worker waits
  // on its helper between chunks), iterations came out of order, the result differed from a
  // clean run and a late "no iteration is planned" turned the status red.
  const browser = await launch({ webgpu: false });
  const settings = { backend: 'cpu', nets: 2, width: 1, workers: 2 };
  const finish = async (page, n) => {
    await waitText(page, '#run-status', new RegExp(`finished after ${n} iterations`));
    return page.evaluate(() => ({ losses: [...window.anondistill.losses], images: window.anondistill.distilled.images, lrs: window.anondistill.distilled.lrs }));
  };
  try {
    const { page, late } = await demoPage(browser, server.url, { ...settings, iterations: 40 });
    await page.click('#start');
    await page.waitForFunction(() => window.anondistill.checkpoint && window.anondistill.checkpoint.iterations >= 2, null, { timeout: 600000 });
    assert.equal(await page.isDisabled('#cancel'), false, 'cancel is usable while the run goes on');
    assert.equal(await page.isDisabled('#pause'), false, 'pause is usable while the run goes on');
    await page.click('#cancel');
    await waitText(page, '#run-status', /cancelled at iteration \d+/);
    await setSetting(page, 'max_iterations', 6);
    await page.click('#start');
    const after = await finish(page, 6);
    await page.waitForTimeout(2000);
    assert.match(await page.textContent('#run-status'), /finished after 6 iterations$/);
    assert.doesNotMatch(await page.getAttribute('#run-status', 'class') || '', /error/);
    const fresh = await demoPage(browser, server.url, { ...settings, iterations: 6 });
    await fresh.page.click('#start');
    const clean = await finish(fresh.page, 6);
    assert.equal(after.losses.length, 6);
    assert.deepEqual(after.losses, clean.losses, 'the same outer losses as a clean run');
    assert.deepEqual(after.lrs, clean.lrs);
    assert.deepEqual(after.images, clean.images, 'the same images as a clean run, bit for bit');
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});

test('a saved session continues where it stopped and ends where an uninterrupted run ends', async () => {
  const browser = await launch({ webgpu: false });
  // At LeNet width 2; the page that continues the session is set to width 1 before loading it, so
  // the width has to come back from the session file.
  const cpuDemo = () => demoPage(browser, server.url, { backend: 'cpu', iterations: 6, width: 2 });
  const images = (page) => page.evaluate(() => window.anondistill.distilled.images);
  try {
    const straight = (await cpuDemo()).page;
    await straight.click('#start');
    await waitText(straight, '#run-status', /finished after 6 iterations/);
    const expected = await images(straight);

    const first = (await cpuDemo()).page;
    await first.click('#start');
    await waitText(first, '#run-status', /iteration [2-4] of 6/);
    await first.click('#pause');
    await waitText(first, '#run-status', /paused at iteration [24]$/);
    const pausedAt = Number((await first.textContent('#run-status')).match(/iteration (\d)/)[1]);
    const [download] = await Promise.all([first.waitForEvent('download'), first.click('#save-session')]);
    assert.equal(download.suggestedFilename(), 'anondistill-session.safetensors');
    const file = ARTIFACTS + 'session.safetensors';
    await download.saveAs(file);

    // The session file continues on the same data in a fresh page, with the saved settings.
    const { page: second, late } = await cpuDemo();
    const afterReady = late.length;
    await setSetting(second, 'max_iterations', 99);
    await setSetting(second, 'lenet_width', 1);
    await second.setInputFiles('#session-input', file);
    await waitText(second, '#run-status', /finished after 6 iterations/);
    assert.equal(await second.inputValue('#settings [name=max_iterations]'), '6', 'the saved settings are restored');
    assert.equal(await second.inputValue('#settings [name=lenet_width]'), '2', 'the saved width is restored');
    assert.equal(await second.evaluate(() => window.anondistill.losses.length), 6 - pausedAt);
    assert.deepEqual(await images(second), expected, 'the resumed run ends where the uninterrupted one does');
    assert.deepEqual(late.slice(afterReady), []);

    // On other data it is refused with the reason, and the page keeps working.
    await second.setInputFiles('#folder-input', patchFolder(10));
    await waitText(second, '#data-status', /20 images of 20 patients in 2 classes/);
    await second.setInputFiles('#session-input', file);
    await waitText(second, '#run-status', /other (data|settings)/);
    assert.equal(await second.isDisabled('#start'), false);
  } finally {
    await browser.close();
  }
});

test('losing the GPU mid-run carries on on the CPU from the last state', async () => {
  const browser = await launch({ webgpu: true });
  try {
    const { page } = await demoPage(browser, server.url, { backend: 'webgpu', iterations: 6, nets: 1 });
    await page.click('#start');
    await page.waitForFunction(() => window.anondistill.checkpoint && window.anondistill.checkpoint.iterations >= 2, null, { timeout: 600000 });
    assert.equal(await page.getAttribute('#backend-label', 'data-backend'), 'webgpu');
    const lostAt = await page.evaluate(() => {
      window.anondistill.worker.postMessage({ type: 'lose-device' });
      return window.anondistill.checkpoint.iterations;
    });
    await waitText(page, '#notice', /GPU device was lost .*continues on the CPU from iteration [2-5]/);
    await waitText(page, '#run-status', /finished after 6 iterations/);
    assert.equal(await page.getAttribute('#backend-label', 'data-backend'), 'cpu');
    assert.match(await page.textContent('#backend-label'), /after the GPU was lost/);
    assert.ok(lostAt >= 2 && lostAt < 6, `lost at ${lostAt}`);
    await page.screenshot({ path: ARTIFACTS + 'gpu-lost.png', fullPage: true });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    await download.saveAs(ARTIFACTS + 'after-gpu-loss.zip');
    const manifest = JSON.parse(execFileSync('python3', ['-c', 'import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read("manifest.json").decode())', ARTIFACTS + 'after-gpu-loss.zip']));
    assert.equal(manifest.iterations_run, 6);
  } finally {
    await browser.close();
  }
});

test('a folder of 10,000 patches loads, stays responsive and runs', async () => {
  // 10,000 real patch files: the 400 demo patches, each copied 25 times under new names.
  const root = mkdtempSync(join(tmpdir(), 'many-'));
  for (const c of ['normal', 'pneumonia']) {
    mkdirSync(join(root, c));
    const files = readdirSync(join(DEMO, c));
    for (let k = 0; k < 25; k++) for (const f of files) cpSync(join(DEMO, c, f), join(root, c, `${k}_${f}`));
  }
  const browser = await launch({ webgpu: false });
  try {
    const { page, late } = await open(browser, server.url);
    await page.setInputFiles('#folder-input', root);
    let slowest = 0;
    while (!/10000 images of 10000 patients in 2 classes/.test(await page.textContent('#data-status'))) {
      const t = Date.now();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
      slowest = Math.max(slowest, Date.now() - t);
      await page.waitForTimeout(100);
    }
    assert.ok(slowest < 1000, `a frame took ${slowest} ms while 10,000 files were read and decoded`);
    // Each patch its own patient: about 0.2 held out for testing and 0.2 of the rest for the audit.
    const split = (await page.textContent('#data-status')).match(/(\d+) images \(\1 patients\) to distil from, (\d+) \(\2\) kept back for the privacy audit, (\d+) \(\3\) held out/);
    const [members, holdout, heldOut] = (split || []).slice(1).map(Number);
    assert.ok(split && members + holdout + heldOut === 10000 && Math.abs(heldOut - 2000) < 200 && Math.abs(holdout - 1600) < 200, `the split: ${split}`);
    assert.equal(await page.locator('.thumb').count(), 16);
    await page.selectOption('#settings [name=backend]', 'cpu');
    await setSetting(page, 'max_iterations', 2);
    await page.click('#start');
    await waitText(page, '#run-status', /finished after 2 iterations/);
    assert.deepEqual(late, []);
  } finally {
    await browser.close();
  }
});
