// The distil panel: start, pause, resume, cancel, save and continue a session; the run's
// progress, curves and distilled images as the engine reports them.
import { $, store, send, dispatch, current } from './page.js';
import { readSettings, showPrivacyPlan } from './settings.js';
import { sendData, sessionData, transferOf } from './data.js';
import { plot, paintGrey } from './draw.js';
import { fmt } from './format.js';

function freshRun() {
  store.losses = [];
  store.dropped = 0;
  store.firstChunk = null;
  dispatch({ type: 'note', panel: 'notice', text: '' });
}

$('start').addEventListener('click', () => {
  const { backend, workers } = readSettings(); // valid: start is enabled only then
  if (!dispatch({ type: 'start' })) return;
  freshRun();
  sendData({ backend, workers });
});

$('pause').addEventListener('click', () => {
  if (current().run === 'paused') {
    if (!dispatch({ type: 'resume' })) return;
    store.firstChunk = null; // the worker counts this run's time afresh
    send({ type: 'continue' });
  } else if (dispatch({ type: 'pause' })) send({ type: 'pause' });
});

$('cancel').addEventListener('click', () => {
  if (dispatch({ type: 'cancel' })) send({ type: 'cancel' });
});

$('save-session').addEventListener('click', () => {
  if (store.checkpoint) saveBlob(new Blob([store.checkpoint.bytes]), 'anondistill-session.safetensors');
});

/** Continues (or, with run = false, only restores) a saved session on the loaded data. */
export async function resumeFrom(bytes, backend, run) {
  let workers = 1;
  if (run) ({ workers } = readSettings());
  // A copy, as an ArrayBuffer: the page keeps its own to fall back on again.
  const msg = await sessionData({ type: 'resume', bytes: ArrayBuffer.isView(bytes) ? bytes.slice().buffer : bytes.slice(0), backend, run, workers });
  send(msg, [msg.bytes, ...transferOf(msg)]);
}

$('session-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file || !dispatch({ type: 'start' })) return;
  freshRun();
  dispatch({ type: 'note', panel: 'run', text: `resuming ${file.name}…` });
  try {
    await resumeFrom(await file.arrayBuffer(), readSettings().backend, true);
  } catch (err) {
    dispatch({ type: 'error', message: err.message });
  }
});

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

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

// ---- the engine's reports ---------------------------------------------------------------------

export function started(m) {
  store.total = m.total;
  store.backend = m.backend;
  $('backend-label').textContent = ({ webgpu: 'running on the GPU (WebGPU)', cpu: 'running on the CPU (WebAssembly, burn-flex)', ndarray: 'running on the CPU (WebAssembly, burn-ndarray)' }[m.backend] || `running on ${m.backend}`) +
    (m.workers > 1 ? `, ${m.workers} workers` : '') + (store.fallbacks ? ' after the GPU was lost' : '');
  $('backend-label').dataset.backend = m.backend;
  $('backend-label').dataset.workers = m.workers;
  store.privacy = m.privacy || null;
  store.objective = m.objective;
  // A matching set keeps its learning rates and labels: only the loss is plotted.
  const matching = m.objective === 'matching';
  $('lr-plot').closest('figure').hidden = matching;
  $('loss-plot').nextElementSibling.textContent = matching ? 'matching loss: distance of the class-mean embeddings' : 'outer loss on real minibatches';
  if (store.privacy) showPrivacyPlan(store.privacy, m.epsilonSpent);
  else $('privacy-plan').hidden = true;
  $('progress').max = m.total;
  $('progress').value = m.iterations;
  store.firstChunk = null;
  const status = [m.resumed ? `resumed at iteration ${m.iterations} of ${m.total}` : `iteration ${m.iterations} of ${m.total}`];
  if (m.resumedSession) dispatch({ type: 'note', panel: 'notice', text: resumedPrivateSession(m.resumedSession) });
  // Shaders are compiled on first use: a GPU's first iterations take far longer than the rest
  // (bench/HISTORY.md, changes 3 and 13).
  if (m.backend === 'webgpu') status.push('preparing the GPU: its first iterations compile kernels and can take a minute or more');
  dispatch({ type: 'started', text: status.join(' · ') });
}

export function checkpoint(m) {
  store.checkpoint = { bytes: m.bytes, iterations: m.iterations };
  dispatch({ type: 'checkpoint' });
}

export function progress(m) {
  // A private run reports no loss (it would be the members' loss without noise).
  for (const r of m.reports) if (r.loss != null) store.losses.push(r.loss);
  store.dropped = (store.dropped || 0) + m.reports.reduce((n, r) => n + (r.dropped_patients || 0), 0);
  (store.chunks = store.chunks || []).push({ iterations: m.iterations, elapsed: m.elapsed, backend: store.backend });
  const last = m.reports[m.reports.length - 1];
  $('progress').value = m.iterations;
  // The time left at the pace since the first chunk of this run, which carries the warm-up.
  const first = store.firstChunk || (store.firstChunk = { elapsed: m.elapsed, done: m.doneThisRun });
  const per = m.doneThisRun > first.done ? (m.elapsed - first.elapsed) / (m.doneThisRun - first.done) : m.elapsed / Math.max(1, m.doneThisRun);
  const eta = (m.total - m.iterations) * per;
  const releases = store.privacy && store.privacy.objective === 'matching' ? store.privacy.iterations : 0;
  let where = `iteration ${m.iterations} of ${m.total}`;
  let loss = last && last.loss == null ? 'loss not shown: in a private run it is the members\' loss without noise, outside the guarantee'
    : `loss ${last ? last.loss.toFixed(4) : '–'}`;
  // Private matching: the releases first (the only part that reads the patients), then the
  // images matched to them.
  if (releases && m.iterations <= releases) {
    where = `release ${m.iterations} of ${releases}, then ${m.total - releases} matching iterations`;
    loss = 'no loss yet: the images move once the releases are drawn';
  } else if (releases) {
    where = `matching iteration ${m.iterations - releases} of ${m.total - releases}, after ${releases} releases (no patient read)`;
  }
  dispatch({ type: 'progress', text: `${where} · ${loss} · ${fmt(m.elapsed)} elapsed · about ${fmt(eta)} left` });
  if (store.dropped) {
    dispatch({ type: 'note', panel: 'notice', text: `${store.dropped} sampled patient gradient(s) were not finite and were left out of their iterations (a notice on this machine only, not in the download).` });
  }
  if (store.privacy && m.epsilonSpent !== undefined && m.epsilonSpent !== null) {
    store.epsilonSpent = m.epsilonSpent;
    showPrivacyPlan(store.privacy, m.epsilonSpent);
  }
  plot($('loss-plot'), store.losses, '#c33');
  if (last) plot($('lr-plot'), last.lrs, '#36c');
}

export function distilled(m) {
  store.distilled = { images: Array.from(m.images), lrs: Array.from(m.lrs) };
  const grid = $('grid');
  const n = m.images.length / (m.size * m.size);
  if (grid.children.length !== n) {
    grid.replaceChildren(...Array.from({ length: n }, () => {
      const fig = document.createElement('figure');
      const c = document.createElement('canvas');
      c.width = m.size;
      c.height = m.size;
      fig.append(c, document.createElement('figcaption'));
      return fig;
    }));
  }
  for (let i = 0; i < n; i++) {
    const fig = grid.children[i];
    paintGrey(fig.firstChild, m.images.subarray(i * m.size * m.size, (i + 1) * m.size * m.size), m.size, true);
    const label = Array.from(m.labels.subarray(i * m.classes, (i + 1) * m.classes));
    fig.lastChild.textContent = label.map((v, c) => `${store.classes[c] ?? c} ${v.toFixed(2)}`).join(' · ');
    fig.title = `image ${i}, step ${Math.floor(i / m.perStep)}`;
  }
}

export function deviceLost(m) {
  const at = store.checkpoint ? store.checkpoint.iterations : 0;
  store.fallbacks = (store.fallbacks || 0) + 1;
  $('backend-label').textContent = 'GPU lost: continuing on the CPU';
  dispatch({ type: 'note', panel: 'notice', text: `The GPU device was lost (${m.reason}${m.message ? `: ${m.message}` : ''}); the run continues on the CPU from iteration ${at}.` });
}
