// The page: gathers files, talks to the worker, draws progress. Everything stays in this tab.
import './style.css';
import { defaultWorkers } from './defaults.js';
import workerSource from 'workers/worker.js?source';
import helperSource from 'workers/helper.js?source';

const $ = (id) => document.getElementById(id);
const state = { files: [], layoutSkipped: [], testFiles: [], testSkipped: [], groupsCsv: null, renames: {}, classes: [], losses: [], total: 0, running: false, paused: false, started: false, demo: false, checkpoint: null };
window.anondistill = state; // for tests and the curious

// The engine lives in a worker; if it dies (a trap, a lost GPU) a new one takes over from the
// last session file the old one sent. The wasm is fetched and compiled once, while the page loads;
// then the page forbids itself every request (a second policy, `connect-src 'none'`) and starts
// its workers from blob: URLs, which inherit both policies: no worker, helper or restarted engine
// can fetch anything, and none needs to.
const wasmUrl = new URL('../pkg/anondistill_bg.wasm', import.meta.url);
let engine = null; // { module, url } once compiled

function forbidRequests() {
  const meta = document.createElement('meta');
  meta.httpEquiv = 'Content-Security-Policy';
  meta.content = "connect-src 'none'";
  document.head.append(meta);
}

async function loadEngine() {
  try {
    const module = await WebAssembly.compileStreaming(fetch(wasmUrl))
      .catch(async () => WebAssembly.compile(await (await fetch(wasmUrl)).arrayBuffer()));
    return { module, url: URL.createObjectURL(new Blob([workerSource], { type: 'text/javascript' })) };
  } finally {
    forbidRequests();
  }
}
const engineLoaded = loadEngine().then((e) => { engine = e; });

let worker = null;
function spawnWorker() {
  if (worker) worker.terminate();
  worker = new Worker(engine.url);
  worker.onmessage = (e) => {
    if (e.data.type !== 'error') $('data-status').classList.remove('error');
    handlers[e.data.type](e.data);
  };
  worker.onerror = (e) => handlers.error({ message: `the engine failed: ${e.message}`, fatal: true });
  worker.postMessage({ type: 'boot', module: engine.module, helperSource });
  state.worker = worker;
}
// Before the engine is compiled, messages wait for it (in order).
const send = (msg, transfer) => (worker ? worker.postMessage(msg, transfer || []) : engineLoaded.then(() => worker.postMessage(msg, transfer || [])));

// The settings as typed; a field that is not a whole number ≥ 0 is an error that names it and
// what was typed (never clamped: the engine checks each range and names the field too).
function settings() {
  const f = new FormData($('settings'));
  const int = (k) => {
    const text = String(f.get(k)).trim();
    const n = Number(text);
    if (text === '' || !Number.isSafeInteger(n) || n < 0) throw new Error(`${k} = "${text}" is not a whole number of at least 0`);
    return n;
  };
  return {
    config: {
      images_per_class_per_step: int('images_per_class_per_step'),
      steps: int('steps'),
      epochs: int('epochs'),
      max_iterations: int('max_iterations'),
      nets_per_iteration: int('nets_per_iteration'),
      image_size: int('image_size'),
      net: f.get('net'),
      lenet_width: int('lenet_width'),
      seed: int('seed'),
      balance_classes: f.get('balance_classes') === 'true',
      privacy: privacyOf(f),
    },
    backend: f.get('backend'),
    workers: f.get('workers'), // checked by workers() where a run starts
  };
}

// The privacy guarantee as the engine's configuration takes it: undefined when off, else the
// epsilon picked or typed (δ, the clipping norm and the sampling rate take the engine's defaults).
function privacyOf(f) {
  const choice = f.get('privacy');
  if (choice === 'off' || choice === null) return undefined;
  const text = choice === 'custom' ? String(f.get('epsilon')).trim() : choice;
  const epsilon = Number(text);
  if (text === '' || !Number.isFinite(epsilon) || epsilon <= 0) throw new Error(`epsilon = "${text}" is not a positive number`);
  return { epsilon };
}

// The "CPU workers" field, or an error that names it (the engine never sees this setting); its
// range is the input's own min and max.
function workers(text) {
  const { min, max } = $('settings').elements.workers;
  const n = Number(text);
  if (!Number.isInteger(n) || n < Number(min) || n > Number(max)) throw new Error(`CPU workers = ${text} is outside [${min}, ${max}]`);
  return n;
}

// ---- data in ---------------------------------------------------------------------------------

const MAX_FILE_BYTES = 64 << 20; // the engine's limit (src/data/decode.rs): larger files are not read

// The place of a file at `path` (root/<class>/<image> or root/<class>/<patient>/<image>, the root
// being the picked or dropped folder): its class and patient folder, or why it is not used, or,
// for a folder inside a patient folder, `refuse`: the same rules as the command line's folder
// reader. Loose files (no folder) take the class typed beside the file picker.
function placeOf(path) {
  const parts = path.split('/').filter(Boolean);
  if (parts.length <= 1) return { cls: $('files-class').value.trim() || 'class-a' };
  if (parts.length === 2) return { reason: 'not inside a class folder (expected root/<class>/<image>)' };
  if (parts.length === 3) return { cls: parts[1] };
  if (parts.length === 4) return { cls: parts[1], patient: parts[2] };
  return { refuse: `${parts.slice(1, 4).join('/')} is a folder inside the patient folder ${parts.slice(1, 3).join('/')}; expected root/<class>/<image> or root/<class>/<patient>/<image>` };
}

// `fileList` with their paths relative to the root, placed in classes and patients; `dropped`
// are class folders themselves (dropped without their root) when no dropped path goes deeper
// than folder/file. Throws, naming the folder, on a folder inside a patient folder.
function placeFiles(fileList, dropped) {
  const all = Array.from(fileList).map((f) => ({ file: f, name: f.webkitRelativePath || f.relPath || f.name }));
  const asClasses = dropped && all.every((f) => f.name.split('/').filter(Boolean).length <= 2);
  const files = all.filter((f) => !f.name.split('/').some((part) => part.startsWith('.'))); // hidden files and folders
  const placed = { files: [], skipped: [] };
  for (const f of files) {
    const path = asClasses && f.name.includes('/') ? `dropped/${f.name}` : f.name;
    // The path below the picked folder, as the command line names files: the engine gets it, so
    // a patient pattern or table means the same here and there.
    const rel = path.split('/').filter(Boolean).slice(1).join('/') || f.name;
    const place = placeOf(path);
    if (place.refuse) throw new Error(place.refuse);
    if (place.reason) placed.skipped.push({ file: rel, reason: place.reason });
    else if (f.file.size > MAX_FILE_BYTES) placed.skipped.push({ file: rel, reason: `file is ${(f.file.size / 1048576).toFixed(1)} MiB, above the 64 MiB limit` });
    else placed.files.push({ ...f, rel, cls: place.cls, patient: place.patient });
  }
  return placed;
}

// Shows a problem with the data; what was loaded before stays loaded.
function dataError(message) {
  $('data-status').textContent = message;
  $('data-status').classList.add('error');
  handlers.error({ message });
}

async function useFiles(fileList, dropped = false) {
  let placed;
  try {
    placed = placeFiles(fileList, dropped);
  } catch (e) {
    dataError(e.message);
    return;
  }
  if (placed.files.length + placed.skipped.length === 0) return;
  state.files = placed.files;
  state.layoutSkipped = placed.skipped;
  state.renames = {};
  state.demo = false;
  await loadIntoWorker();
}

// An optional test folder (same layout and classes): evaluation uses it instead of a split.
async function useTestFiles(fileList) {
  let placed;
  try {
    placed = placeFiles(fileList, false);
  } catch (e) {
    dataError(`the test folder: ${e.message}`);
    return;
  }
  state.testFiles = placed.files;
  state.testSkipped = placed.skipped.map((k) => ({ ...k, file: `test: ${k.file}` }));
  showTestFolder();
  if (state.files.length) await loadIntoWorker();
}

function showTestFolder() {
  const n = state.testFiles.length;
  $('test-status').textContent = n ? `${n} test files: evaluation uses them instead of a split of the data` : 'none: the data are split by patient';
  $('test-clear').hidden = n === 0;
}

const READ_BATCH = 256; // files read at once: ten thousand reads started together block this thread
let reads = 0; // counts reads, so that one overtaken by a newer one stops

// The bytes of `list` (the picked files by default), a batch at a time, with progress; null when
// a newer read started.
async function readFiles(list = state.files) {
  const id = ++reads;
  const files = list.slice();
  const read = [];
  for (let i = 0; i < files.length; i += READ_BATCH) {
    const batch = await Promise.allSettled(files.slice(i, i + READ_BATCH).map((f) => f.file.arrayBuffer()));
    if (id !== reads) return null;
    batch.forEach((r, k) => {
      const f = files[i + k];
      if (r.status === 'rejected') throw new Error(`could not read ${f.name} (${r.reason.message}): was it moved or changed? Pick the folder again`);
      read.push({ name: f.rel, cls: state.renames[f.cls] || f.cls, patient: f.patient, bytes: r.value });
    });
    $('data-status').textContent = `reading ${files.length} files… ${read.length} read`;
  }
  return read;
}

async function loadIntoWorker() {
  $('data-status').textContent = `reading ${state.files.length} files…`;
  $('data-status').classList.remove('error');
  try {
    const config = settings().config;
    if (state.files.length === 0 && state.layoutSkipped.length) {
      const first = state.layoutSkipped[0];
      throw new Error(`no usable file: ${state.layoutSkipped.length} skipped (${first.file}: ${first.reason}${state.layoutSkipped.length > 1 ? ', …' : ''})`);
    }
    const msg = await dataMessage({ type: 'load', config });
    if (msg) send(msg, transferOf(msg));
  } catch (e) {
    state.pendingStart = null;
    $('data-status').textContent = e.message;
    $('data-status').classList.add('error');
    handlers.error({ message: e.message });
  }
}

// `msg` with the picked files, the test files and the patient grouping; null when a newer read
// started.
async function dataMessage(msg) {
  const files = await readFiles();
  const test = state.testFiles.length ? await readFiles(state.testFiles) : undefined;
  if (!files || test === null) return null;
  return { ...msg, files, test, pattern: $('group-pattern').value.trim() || undefined, csv: state.groupsCsv || undefined };
}

// The buffers a data message hands over.
function transferOf(msg) {
  return msg.files.concat(msg.test || []).map((f) => f.bytes);
}

// Continues (or, with run = false, only restores) a saved session on the current data, in the
// current worker.
async function resumeFrom(bytes, backend, run) {
  // A copy, as an ArrayBuffer: the page keeps its own to fall back on again.
  let msg = { type: 'resume', bytes: ArrayBuffer.isView(bytes) ? bytes.slice().buffer : bytes.slice(0), backend, run, workers: run ? workers(settings().workers) : 1 };
  const transfer = [msg.bytes];
  if (state.demo) msg.demo = true;
  else {
    msg = await dataMessage(msg);
    if (!msg) return;
    transfer.push(...transferOf(msg));
  }
  state.losses = [];
  state.dropped = 0;
  state.started = true;
  setRunning(run !== false);
  send(msg, transfer);
}

function setForm(config) {
  const form = $('settings');
  for (const [k, v] of Object.entries(config)) {
    if (k !== 'privacy' && form.elements[k] && v !== null && v !== undefined) form.elements[k].value = v;
  }
  const eps = config.privacy ? config.privacy.epsilon : null;
  form.elements.privacy.value = eps === null ? 'off' : ['1', '4', '8'].includes(String(eps)) ? String(eps) : 'custom';
  if (eps !== null) form.elements.epsilon.value = eps;
  $('epsilon-label').hidden = form.elements.privacy.value !== 'custom';
}

// ---- the privacy guarantee -------------------------------------------------------------------

const num = (v, digits = 3) => Number(v.toPrecision(digits)).toString();

// What a private run will do and cost, in words, from the engine's plan for the settings as
// typed and the data loaded (asked of the worker whenever either changes); hidden when off.
function askPrivacyPlan() {
  const box = $('privacy-plan');
  $('epsilon-label').hidden = $('settings').elements.privacy.value !== 'custom';
  let config;
  try {
    ({ config } = settings());
  } catch (e) {
    if ($('settings').elements.privacy.value === 'off') return;
    box.hidden = false;
    box.textContent = e.message;
    box.classList.add('error');
    return;
  }
  if (!config.privacy) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  if (!state.summary || state.running) return;
  const s = state.summary;
  send({ type: 'privacy-plan', config, patients: s.patients.train.total, images: s.train_counts.reduce((a, b) => a + b, 0), classes: s.classes.length });
}

function showPrivacyPlan(plan, spent) {
  const box = $('privacy-plan');
  box.hidden = false;
  box.classList.remove('error');
  const unit = plan.unit;
  const lines = [
    `Differential privacy per ${unit}: epsilon ${num(plan.epsilon)} at delta ${plan.delta.toExponential(1)} over ${plan.iterations} iterations. ` +
      `Each iteration samples each of the ${plan.patients} training ${unit}s with probability ${num(plan.sample_rate)} (${num(plan.expected_batch)} on average), ` +
      `clips each ${unit}'s gradient to norm ${num(plan.clip)}, rounds the sum to a fine grid and adds discrete Gaussian noise with noise multiplier sigma ${num(plan.noise_multiplier)}.`,
    `What the noise costs: ${plan.in_words}`,
    plan.covers,
    'The archive leaves out everything from the privacy audit and the baselines trained on members: they are outside the guarantee. The loss is not shown during the run: it would be the members\' loss without noise.',
  ];
  if (spent !== undefined) lines.push(`Spent so far: epsilon ${num(spent)} of ${num(plan.epsilon)}.`);
  box.replaceChildren(...lines.map((t, i) => Object.assign(document.createElement('p'), { textContent: t, id: i === 4 ? 'privacy-spent' : '' })));
}

// A new worker after the old one died: restores the last session file, on the CPU, and
// continues the run when `run` is set.
function recover(run) {
  spawnWorker();
  if (state.checkpoint) resumeFrom(state.checkpoint.bytes, 'cpu', run).catch((e) => handlers.error({ message: `could not restore the last state: ${e.message}` }));
}

async function entriesOf(entry, path) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    file.relPath = path + file.name;
    return [file];
  }
  const reader = entry.createReader();
  const all = [];
  for (;;) {
    const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
    if (batch.length === 0) break;
    all.push(...batch);
  }
  const nested = await Promise.all(all.map((e) => entriesOf(e, `${path}${entry.name}/`)));
  return nested.flat();
}

$('folder-input').addEventListener('change', (e) => useFiles(e.target.files));
$('test-input').addEventListener('change', (e) => useTestFiles(e.target.files));
$('test-clear').addEventListener('click', () => useTestFiles([]));
// Patient ids from a pattern or a table: the data are loaded again with them.
$('settings').addEventListener('change', () => askPrivacyPlan());
$('group-pattern').addEventListener('change', () => { if (state.files.length) loadIntoWorker(); });
$('groups-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file) return;
  state.groupsCsv = await file.text();
  $('groups-name').textContent = file.name;
  $('groups-clear').hidden = false;
  if (state.files.length) loadIntoWorker();
});
$('groups-clear').addEventListener('click', () => {
  state.groupsCsv = null;
  $('groups-name').textContent = 'none';
  $('groups-clear').hidden = true;
  if (state.files.length) loadIntoWorker();
});
$('files-input').addEventListener('change', (e) => useFiles(e.target.files));
$('demo-button').addEventListener('click', () => {
  reads++; // a read of picked files still running is overtaken
  let config;
  try {
    config = settings().config;
  } catch (e) {
    handlers.error({ message: e.message });
    return;
  }
  state.files = [];
  state.layoutSkipped = [];
  state.demo = true;
  $('data-status').textContent = 'decoding the demo patches…';
  send({ type: 'demo', config });
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', async (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const entries = Array.from(e.dataTransfer.items).map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = (await Promise.all(entries.map((en) => entriesOf(en, '')))).flat();
  useFiles(files.length ? files : e.dataTransfer.files, true);
});

const thumbUrls = []; // object URLs of the thumbnails shown, revoked when they are replaced

function showSummary(s) {
  state.classes = s.classes;
  state.summary = s;
  const total = (a) => a.reduce((x, y) => x + y, 0);
  const all = total(s.train_counts) + total(s.holdout_counts) + total(s.test_counts);
  const p = s.patients;
  const separate = !state.demo && state.testFiles.length > 0;
  $('data-status').textContent = `${all} images of ${p.train.total + p.holdout.total + p.test.total} patients in ${s.classes.length} classes, split by patient: ` +
    `${total(s.train_counts)} images (${p.train.total} patients) to distil from, ${total(s.holdout_counts)} (${p.holdout.total}) kept back for the privacy audit, ` +
    `${total(s.test_counts)} (${p.test.total}) ${separate ? 'in the test folder' : 'held out'} for evaluation. ` +
    `The distilled set will have ${s.distilled_images} images and ${s.inner_steps} learning rates.`;
  const box = $('classes');
  box.replaceChildren();
  thumbUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  const refused = new Set(s.skipped.map((k) => k.file));
  s.classes.forEach((name, c) => {
    const row = document.createElement('div');
    row.className = 'class-row';
    const input = document.createElement('input');
    input.value = name;
    input.title = 'class name (edit to rename)';
    input.disabled = state.demo;
    input.addEventListener('change', () => {
      const original = Object.keys(state.renames).find((k) => state.renames[k] === name) || name;
      state.renames[original] = input.value.trim() || original;
      loadIntoWorker();
    });
    const count = document.createElement('span');
    const patients = p.train.per_class[c] + p.holdout.per_class[c] + p.test.per_class[c];
    count.textContent = `${s.train_counts[c] + s.holdout_counts[c] + s.test_counts[c]} images, ${patients} patient${patients === 1 ? '' : 's'}`;
    row.append(input, count);
    // Thumbnails of files the engine used only: a refused file is never decoded by the browser.
    const thumbs = state.files.filter((f) => (state.renames[f.cls] || f.cls) === name && !refused.has(f.rel)).slice(0, 8);
    for (const t of thumbs) {
      const img = document.createElement('img');
      img.className = 'thumb';
      img.src = URL.createObjectURL(t.file);
      thumbUrls.push(img.src);
      img.alt = '';
      row.append(img);
    }
    box.append(row);
  });
  const skippedAll = state.demo ? s.skipped : state.layoutSkipped.concat(state.testSkipped, s.skipped);
  const skipped = $('skipped');
  skipped.replaceChildren(...skippedAll.map((k) => {
    const li = document.createElement('li');
    li.textContent = `${k.file}: ${k.reason}`;
    return li;
  }));
  $('skipped-box').hidden = skippedAll.length === 0;
  $('skipped-box').open = skippedAll.length > 0;
  $('skipped-title').textContent = `${skippedAll.length} file(s) skipped`;
  $('start').disabled = state.running;
}

// ---- running ---------------------------------------------------------------------------------

$('start').addEventListener('click', () => {
  let config, backend, count;
  try {
    let text;
    ({ config, backend, workers: text } = settings());
    count = workers(text);
  } catch (e) {
    handlers.error({ message: e.message });
    return;
  }
  state.losses = [];
  state.dropped = 0;
  state.started = true;
  setRunning(true);
  $('run-status').textContent = 'starting…';
  if (state.demo) send({ type: 'demo', config });
  else if (state.files.length) loadIntoWorker();
  state.pendingStart = { backend, workers: count };
});
$('pause').addEventListener('click', () => {
  if (state.paused) {
    state.paused = false;
    $('pause').textContent = 'pause';
    setRunning(true);
    state.firstChunk = null; // the worker counts this run's time afresh
    send({ type: 'continue' });
  } else {
    state.paused = true;
    $('pause').textContent = 'resume';
    send({ type: 'pause' });
  }
});
$('cancel').addEventListener('click', () => send({ type: 'cancel' }));
$('evaluate').addEventListener('click', () => {
  $('evaluate').disabled = true;
  $('eval-status').textContent = 'training fresh networks on the distilled set and on the baselines…';
  send({ type: 'evaluate', audit: true });
});
$('audit').addEventListener('click', () => {
  $('audit').disabled = true;
  send({ type: 'audit' });
});
$('download').addEventListener('click', () => send({ type: 'export' }));
$('save-session').addEventListener('click', () => {
  if (state.checkpoint) saveBlob(new Blob([state.checkpoint.bytes]), 'anondistill-session.safetensors');
});
$('session-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file) return;
  if (!state.demo && state.files.length === 0) {
    $('run-status').textContent = 'load the data the session was distilled from first, then the session file';
    $('run-status').classList.add('error');
    return;
  }
  $('run-status').classList.remove('error');
  $('run-status').textContent = `resuming ${file.name}…`;
  resumeFrom(await file.arrayBuffer(), settings().backend, true).catch((err) => handlers.error({ message: err.message }));
});

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function setRunning(on) {
  state.running = on;
  $('start').disabled = on;
  $('pause').disabled = !state.started || (!on && !state.paused);
  $('cancel').disabled = !on && !state.paused;
  // Something to evaluate, audit or download exists once a chunk of iterations has been kept.
  $('evaluate').disabled = on || !state.checkpoint;
  $('audit').disabled = on || !state.checkpoint;
  $('download').disabled = on || !state.checkpoint;
  $('save-session').disabled = !state.checkpoint;
}

function fmt(sec) {
  if (!isFinite(sec)) return '–';
  const m = Math.floor(sec / 60);
  return m > 0 ? `${m} min ${Math.round(sec % 60)} s` : `${sec.toFixed(1)} s`;
}

function plot(canvas, values, color) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (values.length === 0) return;
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = 30 + (i / Math.max(1, values.length - 1)) * (canvas.width - 40);
    const y = 10 + (1 - (v - lo) / span) * (canvas.height - 30);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#333';
  ctx.font = '11px sans-serif';
  ctx.fillText(hi.toPrecision(3), 2, 12);
  ctx.fillText(lo.toPrecision(3), 2, canvas.height - 20);
}

// Paints a size × size grey image on `canvas`: values in [0, 1] as they are, or min–max scaled
// when `stretch`.
function paintGrey(canvas, values, size, stretch) {
  let lo = 0, hi = 1;
  if (stretch) {
    lo = Infinity; hi = -Infinity;
    for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  const span = hi - lo || 1;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(size, size);
  values.forEach((v, k) => {
    const g = Math.round(Math.min(1, Math.max(0, (v - lo) / span)) * 255);
    img.data.set([g, g, g, 255], k * 4);
  });
  ctx.putImageData(img, 0, 0);
}

function drawGrid(d) {
  const grid = $('grid');
  const n = d.images.length / (d.size * d.size);
  if (grid.children.length !== n) {
    grid.replaceChildren(...Array.from({ length: n }, () => {
      const fig = document.createElement('figure');
      const c = document.createElement('canvas');
      c.width = d.size;
      c.height = d.size;
      const cap = document.createElement('figcaption');
      fig.append(c, cap);
      return fig;
    }));
  }
  for (let i = 0; i < n; i++) {
    const fig = grid.children[i];
    paintGrey(fig.firstChild, d.images.subarray(i * d.size * d.size, (i + 1) * d.size * d.size), d.size, true);
    const label = Array.from(d.labels.subarray(i * d.classes, (i + 1) * d.classes));
    fig.lastChild.textContent = label.map((v, c) => `${state.classes[c] ?? c} ${v.toFixed(2)}`).join(' · ');
    fig.title = `image ${i}, step ${Math.floor(i / d.perStep)}`;
  }
}

// A new canvas with a grey image of pixel values in [0, 1], or min–max scaled when `stretch`.
function greyCanvas(values, size, stretch) {
  const c = document.createElement('canvas');
  c.width = size;
  c.height = size;
  c.className = 'audit-image';
  paintGrey(c, values, size, stretch);
  return c;
}

function cell(...parts) {
  const td = document.createElement('td');
  for (const p of parts) td.append(typeof p === 'string' ? document.createTextNode(p) : p);
  return td;
}

function showAudit(m) {
  const a = m.report;
  const iv = (x, d = 3) => `${x.value.toFixed(d)} [${x.lo.toFixed(d)}, ${x.hi.toFixed(d)}]`;
  const leak = a.reasons.length > 0;
  $('audit-verdict').textContent = `Verdict: ${a.verdict}.`;
  // Green only for "no evidence at this sample size"; "too few images to judge" stays plain.
  $('audit-verdict').className = leak ? 'error' : a.verdict.startsWith('no evidence') ? 'ok' : '';
  $('audit-reasons').replaceChildren(...a.reasons.map((r) => Object.assign(document.createElement('li'), { textContent: r })));
  const sum = (v) => v.reduce((x, y) => x + y, 0);
  const sh = a.share;
  $('audit-summary').textContent = `${sum(a.members)} members, ${sum(a.holdout)} holdout patches (never distilled from). ` +
    `${sh.closer_to_member} of ${sh.images} distilled images are nearer a member than a holdout patch; counting each nearest patch once, ` +
    `${sh.distinct_nearest_members} of ${sh.distinct_nearest} (95% interval ${sh.distinct_share.lo.toFixed(2)}–${sh.distinct_share.hi.toFixed(2)}; one half when nothing leaks). ` +
    `Near copies: ${a.near_copy.flagged.length} (L2 ≤ ${a.near_copy.l2_threshold.toFixed(2)} or SSIM ≥ ${a.near_copy.ssim_threshold.toFixed(3)}, ` +
    `the ${100 * a.near_copy.quantile}% quantile of members' distances to their nearest other member). ` +
    `Labels whose largest entry is another class: ${a.labels_not_own_class.length}.`;
  const mem = a.membership;
  $('audit-attack').tBodies[0].replaceChildren(...[['the distilled set', mem.distilled], [`a random real subset of the same size (lr ${mem.random_subset_lr})`, mem.random_subset]]
    .map(([name, x]) => {
      const tr = document.createElement('tr');
      tr.append(cell(name), cell(iv(x.auc)), cell(iv(x.tpr_at_1pct_fpr)), cell(iv(x.tpr_at_0_1pct_fpr)));
      return tr;
    }));
  $('audit-comparison').textContent = `${mem.comparison} (mean loss over ${mem.nets} networks; ${mem.members} members vs ${mem.holdout} holdout patches).`;
  $('audit-gallery').tBodies[0].replaceChildren(...a.images.map((im, i) => {
    const g = m.gallery[i];
    const tr = document.createElement('tr');
    if (im.near_copy) tr.className = 'flagged';
    const label = `${im.label_top_class}, entropy ${im.label_entropy_bits == null ? '–' : im.label_entropy_bits.toFixed(2)} bits` +
      (im.label_not_own_class ? ` (initialised as ${im.class})` : '');
    tr.append(
      cell(greyCanvas(g.distilled, m.size, true), `#${i}${im.near_copy ? ' NEAR COPY' : ''}`),
      cell(greyCanvas(g.memberL2, m.size), `L2 ${im.member_l2.toFixed(2)}`),
      cell(greyCanvas(g.memberSsim, m.size), `SSIM ${im.member_ssim.toFixed(3)}`),
      cell(greyCanvas(g.holdoutL2, m.size), `L2 ${im.holdout_l2.toFixed(2)}`),
      cell(greyCanvas(g.holdoutSsim, m.size), `SSIM ${im.holdout_ssim.toFixed(3)}`),
      cell(label),
    );
    return tr;
  }));
  $('audit-panel').hidden = false;
}

// The distilled program class by class: recall (sensitivity) and precision, the confusion matrix
// as a small heat map (rows: true class, columns: predicted; % of the row over all networks) and
// the warnings the engine gives for a one-sided result.
function showClasses(e) {
  const d = e.distilled;
  const pct = (a, none) => (a == null ? none : `${(100 * a.mean).toFixed(1)}%`);
  const lines = e.classes.map((c, k) => `${c}: recall ${pct(d.per_class_recall[k], 'none (no test image)')}, precision ${pct(d.per_class_precision[k], 'never predicted')}`);
  if (d.specificity) lines.push(`specificity (${e.classes[1]} as the positive finding): ${pct(d.specificity, '')}`);
  $('eval-classes').textContent = `The distilled program, class by class: ${lines.join('; ')}.`;
  const table = $('confusion');
  const head = document.createElement('tr');
  head.append(document.createElement('th'), ...e.classes.map((c) => Object.assign(document.createElement('th'), { textContent: `predicted ${c}` })));
  const rows = d.confusion.map((row, k) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('th'), { textContent: `true ${e.classes[k]}` }));
    for (const v of row) {
      const td = document.createElement('td');
      td.textContent = `${(100 * v).toFixed(0)}%`;
      td.style.background = `rgba(37, 99, 235, ${v.toFixed(3)})`;
      td.style.color = v > 0.55 ? 'white' : 'black';
      tr.append(td);
    }
    return tr;
  });
  table.replaceChildren(head, ...rows);
  table.hidden = false;
  $('eval-warnings').replaceChildren(...e.warnings.map((w) => Object.assign(document.createElement('li'), { textContent: `The distilled program: ${w}.` })));
}

// ---- messages from the worker ----------------------------------------------------------------

// A private session file resumed a second time in this browser spends its remaining budget
// again: the ids of resumed files are kept here (an id, never data) so that the second resume is
// flagged. Returns the notice to show.
function resumedPrivateSession(id) {
  const key = 'anondistill-resumed-private-sessions';
  let seen = [];
  try { seen = JSON.parse(localStorage.getItem(key) || '[]'); } catch { seen = []; }
  const again = seen.includes(id);
  if (!again) {
    try { localStorage.setItem(key, JSON.stringify([...seen, id].slice(-200))); } catch { /* storage off: nothing kept */ }
  }
  const spend = 'Resuming a private session continues its plan up to its planned iterations; the archive accounts for this continuation alone.';
  return again
    ? `This private session file was resumed before in this browser: a second continuation spends its remaining epsilon again, and the results of both together are less private than each archive says. ${spend}`
    : `${spend} If the run that saved this file went on, or the file is resumed again (here or elsewhere), the results together are less private than each archive says.`;
}

const handlers = {
  ready() {
    document.body.dataset.ready = '1';
  },
  loaded(m) {
    if (m.config) setForm(m.config);
    showSummary(m.summary);
    if (!state.pendingStart) askPrivacyPlan();
    if (m.attribution) $('attribution').textContent = m.attribution;
    if (state.pendingStart) {
      send({ type: 'start', ...state.pendingStart });
      state.pendingStart = null;
    }
  },
  started(m) {
    state.total = m.total;
    state.backend = m.backend;
    $('backend-label').textContent = ({ webgpu: 'running on the GPU (WebGPU)', cpu: 'running on the CPU (WebAssembly, burn-flex)', ndarray: 'running on the CPU (WebAssembly, burn-ndarray)' }[m.backend] || `running on ${m.backend}`) +
      (m.workers > 1 ? `, ${m.workers} workers` : '') + (state.fallbacks ? ' after the GPU was lost' : '');
    $('backend-label').dataset.backend = m.backend;
    $('backend-label').dataset.workers = m.workers;
    state.privacy = m.privacy || null;
    if (state.privacy) showPrivacyPlan(state.privacy, m.epsilonSpent);
    else $('privacy-plan').hidden = true;
    $('progress').max = m.total;
    $('progress').value = m.iterations;
    state.firstChunk = null;
    const status = m.resumed ? [`resumed at iteration ${m.iterations} of ${m.total}`] : [];
    if (m.resumedSession) $('notice').textContent = resumedPrivateSession(m.resumedSession);
    // Shaders are compiled on first use: a GPU's first iterations take far longer than the rest
    // (bench/HISTORY.md, changes 3 and 13).
    if (m.backend === 'webgpu') status.push('preparing the GPU: its first iterations compile kernels and can take a minute or more');
    if (status.length) $('run-status').textContent = status.join(' · ');
  },
  restored(m) {
    setRunning(false);
    state.paused = true;
    $('pause').textContent = 'resume';
    $('pause').disabled = false;
    $('cancel').disabled = false;
    $('run-status').textContent += ` · restored at iteration ${m.iterations}: resume continues on the CPU`;
  },
  checkpoint(m) {
    state.checkpoint = { bytes: m.bytes, iterations: m.iterations };
    $('save-session').disabled = false;
  },
  'device-lost'(m) {
    const at = state.checkpoint ? state.checkpoint.iterations : 0;
    state.fallbacks = (state.fallbacks || 0) + 1;
    $('backend-label').textContent = 'GPU lost: continuing on the CPU';
    $('notice').textContent = `The GPU device was lost (${m.reason}${m.message ? `: ${m.message}` : ''}); the run continues on the CPU from iteration ${at}.`;
    recover(true);
  },
  progress(m) {
    if (state.audit) {
      state.audit = null;
      $('audit-status').textContent = 'the audit shown is of an earlier state and is left out of the download; run it again for this one';
    }
    if (state.evaluated) {
      state.evaluated = false;
      $('eval-status').textContent = 'the evaluation shown is of an earlier state and is left out of the download; evaluate again for this one';
    }
    // A private run reports no loss (it would be the members' loss without noise).
    for (const r of m.reports) if (r.loss != null) state.losses.push(r.loss);
    state.dropped = (state.dropped || 0) + m.reports.reduce((n, r) => n + (r.dropped_patients || 0), 0);
    (state.chunks = state.chunks || []).push({ iterations: m.iterations, elapsed: m.elapsed, backend: state.backend });
    const last = m.reports[m.reports.length - 1];
    $('progress').value = m.iterations;
    // The time left at the pace since the first chunk of this run, which carries the warm-up.
    const first = state.firstChunk || (state.firstChunk = { elapsed: m.elapsed, done: m.doneThisRun });
    const per = m.doneThisRun > first.done ? (m.elapsed - first.elapsed) / (m.doneThisRun - first.done) : m.elapsed / Math.max(1, m.doneThisRun);
    const eta = (m.total - m.iterations) * per;
    const loss = last && last.loss == null ? 'loss not shown: in a private run it is the members\' loss without noise, outside the guarantee'
      : `loss ${last ? last.loss.toFixed(4) : '–'}`;
    $('run-status').textContent = `iteration ${m.iterations} of ${m.total} · ${loss} · ${fmt(m.elapsed)} elapsed · about ${fmt(eta)} left`;
    if (state.dropped) {
      $('notice').textContent = `${state.dropped} sampled patient gradient(s) were not finite and were left out of their iterations (a notice on this machine only, not in the download).`;
    }
    if (state.privacy && m.epsilonSpent !== undefined && m.epsilonSpent !== null) {
      state.epsilonSpent = m.epsilonSpent;
      showPrivacyPlan(state.privacy, m.epsilonSpent);
    }
    plot($('loss-plot'), state.losses, '#c33');
    if (last) plot($('lr-plot'), last.lrs, '#36c');
  },
  distilled(m) {
    state.distilled = { images: Array.from(m.images), lrs: Array.from(m.lrs) };
    drawGrid(m);
  },
  finished(m) {
    setRunning(false);
    $('pause').disabled = true;
    $('run-status').textContent += ` · finished after ${m.iterations} iterations`;
  },
  paused(m) {
    if (state.cancelled) return;
    setRunning(false);
    $('pause').disabled = false;
    $('cancel').disabled = false;
    $('run-status').textContent = `paused at iteration ${m.iterations}`;
  },
  cancelled(m) {
    state.paused = false;
    $('pause').textContent = 'pause';
    setRunning(false);
    $('pause').disabled = true;
    $('run-status').textContent = `cancelled at iteration ${m.iterations}; the last state is kept for evaluation and download`;
  },
  stopped(m) {
    setRunning(false);
    $('pause').disabled = true;
    $('run-status').textContent = `stopped: ${m.reason}. The last good state is kept for download.`;
    $('run-status').classList.add('error');
  },
  evaluation(m) {
    const e = m.evaluation;
    const pct = (a) => `${(100 * a.mean).toFixed(1)}% ± ${(100 * a.std).toFixed(1)}`;
    const rows = [['distilled set (learned labels and learning rates)', e.distilled], [`random real subset of the same size (lr ${e.random_subset_lr})`, e.random_subset]];
    if (e.full_data) rows.push(['all training data', e.full_data]);
    const body = $('eval-table').tBodies[0];
    // With imbalanced classes balanced accuracy is the headline (in bold).
    $('eval-table').classList.toggle('imbalanced', e.imbalanced);
    body.replaceChildren(...rows.map(([name, a]) => {
      const tr = document.createElement('tr');
      for (const t of [name, pct(a.balanced_accuracy), pct(a.accuracy), a.auc == null ? 'n/a' : a.auc.toFixed(3), String(a.nets)]) {
        const td = document.createElement('td');
        td.textContent = t;
        tr.append(td);
      }
      return tr;
    }));
    $('eval-table').hidden = false;
    showClasses(e);
    const fewest = Math.min(...e.test_counts);
    $('eval-status').textContent = `on ${e.test_images} held-out patches (${e.test_counts.join(' / ')} by class; ± is the sample std over the networks)` +
      (e.imbalanced ? '; the classes are imbalanced: read balanced accuracy, the mean of the classes\' recalls' : '') +
      (fewest < 20 ? `; a class has only ${fewest}: these accuracies are too uncertain to mean much` : '');
    state.evaluated = true;
    $('evaluate').disabled = false;
  },
  'audit-started'() {
    $('audit').disabled = true;
    $('audit-status').textContent = 'auditing: nearest real patches, near copies, membership attack…';
  },
  audit(m) {
    showAudit(m);
    state.audit = m.report;
    $('audit-status').textContent = `audit of iteration ${state.checkpoint ? state.checkpoint.iterations : '?'}; ` +
      (state.privacy ? 'it stays out of the download: it uses the holdout patients and is outside the privacy guarantee' : 'it goes into the download');
    $('audit').disabled = state.running;
  },
  notice(m) {
    $('notice').textContent = m.message;
  },
  archive(m) {
    saveBlob(new Blob([m.bytes], { type: 'application/zip' }), 'result.zip');
  },
  'privacy-plan'(m) {
    if (m.error) {
      const box = $('privacy-plan');
      box.hidden = false;
      box.textContent = m.error;
      box.classList.add('error');
    } else if (m.plan) showPrivacyPlan(m.plan);
    else $('privacy-plan').hidden = true;
  },
  error(m) {
    state.pendingStart = null; // a failed load must not start a run when the next one succeeds
    const where = state.running || state.started ? $('run-status') : $('data-status');
    where.textContent = m.message;
    if (m.fatal && state.running && state.backend === 'webgpu') {
      // A trap while the GPU was computing is how burn-wgpu reports a lost device.
      handlers['device-lost']({ reason: 'the GPU stopped answering' });
      return;
    }
    if (m.fatal) {
      // The engine cannot be used any more: a new one restores the last good state.
      where.textContent += state.checkpoint ? `; the state of iteration ${state.checkpoint.iterations} is restored` : '; please load the data again';
      recover(false);
    }
    where.classList.add('error');
    setRunning(false);
    $('start').disabled = false;
  },
};

$('settings').elements.workers.value = defaultWorkers(navigator.hardwareConcurrency);
engineLoaded.then(spawnWorker, (e) => {
  $('data-status').textContent = `The engine could not be loaded: ${e.message}. Reload the page.`;
  $('data-status').classList.add('error');
});
