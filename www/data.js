// The data panel: picked, dropped or demo files placed in classes and patients, read a batch at
// a time and handed to the engine; its summary of classes, patients, splits and skipped files.
import { $, store, send, dispatch, current } from './page.js';
import { readSettings } from './settings.js';

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

// Clears what the panel shows of the data last loaded: a new load either replaces it or fails.
function clearShown() {
  $('classes').replaceChildren();
  thumbUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  $('skipped-box').hidden = true;
  $('data-cautions').replaceChildren();
}

// A refused load: nothing of it is kept, and nothing can start until data load.
function refuse(message) {
  store.files = [];
  store.layoutSkipped = [];
  store.demo = false;
  store.summary = null;
  dispatch({ type: 'refused', message });
}

/** Uses picked or dropped files as the data. */
export async function useFiles(fileList, dropped = false) {
  if (!dispatch({ type: 'load', text: 'reading the files…' })) return;
  clearShown();
  let placed;
  try {
    placed = placeFiles(fileList, dropped);
  } catch (e) {
    refuse(e.message);
    return;
  }
  if (placed.files.length === 0) {
    const first = placed.skipped[0];
    refuse(first ? `no usable file: ${placed.skipped.length} skipped (${first.file}: ${first.reason}${placed.skipped.length > 1 ? ', …' : ''})` : 'the folder holds no file');
    return;
  }
  store.files = placed.files;
  store.layoutSkipped = placed.skipped;
  store.renames = {};
  store.demo = false;
  await sendData();
}

/** Uses the demo patches as the data. */
export function useDemo() {
  if (!dispatch({ type: 'load', text: 'decoding the demo patches…' })) return;
  clearShown();
  store.files = [];
  store.layoutSkipped = [];
  store.demo = true;
  sendData();
}

/** Loads the data again with the settings as typed (a rename, a pattern, a table, a test
 *  folder), when some are loaded. */
function reload() {
  if (!(store.files.length || store.demo) || !dispatch({ type: 'load', text: 'reading the files again…' })) return;
  clearShown();
  sendData();
}

// An optional test folder (same layout and classes): evaluation uses it instead of a split.
async function useTestFiles(fileList) {
  let placed;
  try {
    placed = placeFiles(fileList, false);
  } catch (e) {
    if (dispatch({ type: 'load', text: '' })) refuse(`the test folder: ${e.message}`);
    return;
  }
  store.testFiles = placed.files;
  store.testSkipped = placed.skipped.map((k) => ({ ...k, file: `test: ${k.file}` }));
  const n = store.testFiles.length;
  $('test-status').textContent = n ? `${n} test files: evaluation uses them instead of a split of the data` : 'none: the data are split by patient';
  $('test-clear').hidden = n === 0;
  if (store.files.length) reload();
}

const READ_BATCH = 256; // files read at once: ten thousand reads started together block this thread

// The bytes of `list`, a batch at a time, with progress in the data line.
async function readFiles(list) {
  const files = list.slice();
  const read = [];
  for (let i = 0; i < files.length; i += READ_BATCH) {
    const batch = await Promise.allSettled(files.slice(i, i + READ_BATCH).map((f) => f.file.arrayBuffer()));
    batch.forEach((r, k) => {
      const f = files[i + k];
      if (r.status === 'rejected') throw new Error(`could not read ${f.name} (${r.reason.message}): was it moved or changed? Pick the folder again`);
      read.push({ name: f.rel, cls: store.renames[f.cls] || f.cls, patient: f.patient, bytes: r.value });
    });
    if (current().data === 'loading') dispatch({ type: 'note', panel: 'data', text: `reading ${files.length} files… ${read.length} read` });
  }
  return read;
}

/** Hands the data to the engine with the settings as typed; with `start` ({backend, workers}),
 *  the engine starts a run on them once they are loaded (the data are read again: a file
 *  changed since it was picked is named). A problem refuses the load. */
export async function sendData(start) {
  let config;
  try {
    ({ config } = readSettings());
  } catch {
    // The settings line names the problem; the data wait for it to be fixed.
    refuse('not loaded: the settings have a problem (see Settings); fix it and load the data again');
    return;
  }
  try {
    if (store.demo) {
      send({ type: 'demo', config, start });
      return;
    }
    const msg = { type: 'load', config, start, ...(await readData()) };
    send(msg, transferOf(msg));
  } catch (e) {
    refuse(e.message);
  }
}

/** The data message of a resumed session: the files read again, or the demo. */
export async function sessionData(msg) {
  return store.demo ? { ...msg, demo: true } : { ...msg, ...(await readData()) };
}

// What a data message carries of the picked files: their bytes read again, the test folder's,
// and the patient grouping (pattern, table).
async function readData() {
  const files = await readFiles(store.files);
  const test = store.testFiles.length ? await readFiles(store.testFiles) : undefined;
  return { files, test, pattern: $('group-pattern').value.trim() || undefined, csv: store.groupsCsv || undefined };
}

/** The file buffers a data message hands over to the engine's worker. */
export const transferOf = (msg) => (msg.files || []).concat(msg.test || []).map((f) => f.bytes);

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

const thumbUrls = []; // object URLs of the thumbnails shown, revoked when they are replaced

/** Shows the engine's summary of the loaded data; returns the data line's text. */
export function showSummary(s) {
  store.classes = s.classes;
  store.summary = s;
  clearShown();
  const total = (a) => a.reduce((x, y) => x + y, 0);
  const all = total(s.train_counts) + total(s.holdout_counts) + total(s.test_counts);
  const p = s.patients;
  const separate = !store.demo && store.testFiles.length > 0;
  const text = `${all} images of ${p.train.total + p.holdout.total + p.test.total} patients in ${s.classes.length} classes, split by patient: ` +
    `${total(s.train_counts)} images (${p.train.total} patients) to distil from, ${total(s.holdout_counts)} (${p.holdout.total}) kept back for the privacy audit, ` +
    `${total(s.test_counts)} (${p.test.total}) ${separate ? 'in the test folder' : 'held out'} for evaluation. ` +
    `The distilled set will have ${s.distilled_images} images and ${s.inner_steps} learning rates.`;
  const box = $('classes');
  const refused = new Set(s.skipped.map((k) => k.file));
  s.classes.forEach((name, c) => {
    const row = document.createElement('div');
    row.className = 'class-row';
    const input = document.createElement('input');
    input.value = name;
    input.title = 'class name (edit to rename)';
    input.disabled = store.demo;
    input.addEventListener('change', () => {
      const original = Object.keys(store.renames).find((k) => store.renames[k] === name) || name;
      store.renames[original] = input.value.trim() || original;
      reload();
    });
    const count = document.createElement('span');
    const patients = p.train.per_class[c] + p.holdout.per_class[c] + p.test.per_class[c];
    count.textContent = `${s.train_counts[c] + s.holdout_counts[c] + s.test_counts[c]} images, ${patients} patient${patients === 1 ? '' : 's'}`;
    row.append(input, count);
    // Thumbnails of files the engine used only: a refused file is never decoded by the browser.
    const thumbs = store.files.filter((f) => (store.renames[f.cls] || f.cls) === name && !refused.has(f.rel)).slice(0, 8);
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
  const skippedAll = store.demo ? s.skipped : store.layoutSkipped.concat(store.testSkipped, s.skipped);
  $('skipped').replaceChildren(...skippedAll.map((k) => Object.assign(document.createElement('li'), { textContent: `${k.file}: ${k.reason}` })));
  $('skipped-box').hidden = skippedAll.length === 0;
  $('skipped-box').open = skippedAll.length > 0;
  $('skipped-title').textContent = `${skippedAll.length} file(s) skipped`;
  $('data-cautions').replaceChildren(...(s.cautions || []).map((w) => Object.assign(document.createElement('li'), { textContent: `Before you start: ${w}.` })));
  return text;
}

// ---- the controls ----------------------------------------------------------------------------

$('folder-input').addEventListener('change', (e) => useFiles(e.target.files));
$('files-input').addEventListener('change', (e) => useFiles(e.target.files));
$('test-input').addEventListener('change', (e) => useTestFiles(e.target.files));
$('test-clear').addEventListener('click', () => useTestFiles([]));
$('demo-button').addEventListener('click', () => useDemo());
// Patient ids from a pattern or a table: the data are loaded again with them.
$('group-pattern').addEventListener('change', () => reload());
$('groups-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file) return;
  store.groupsCsv = await file.text();
  $('groups-name').textContent = file.name;
  $('groups-clear').hidden = false;
  reload();
});
$('groups-clear').addEventListener('click', () => {
  store.groupsCsv = null;
  $('groups-name').textContent = 'none';
  $('groups-clear').hidden = true;
  reload();
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
