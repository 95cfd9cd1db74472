// The Web Worker that owns the wasm engine; the page only sends it messages, so the UI thread
// never blocks. Protocol: see the `handlers` below; every reply has a `type`.
import init, { Session, demoAttribution, privacyPlan, sessionConfig, settingsFields } from '../pkg/anondistill.js';
import { MAX_DEFAULT_WORKERS } from './defaults.js';

const CHUNK = 2; // outer iterations between progress messages
let session = null;
let source = null; // how the current session's data came in: { files, pattern, csv, test } or { demo: true }
let running = false;
let startTime = 0;
let doneBefore = 0;
let gpuDevice = null;
// The page starts this worker from a blob: URL and sends `boot` first: the compiled wasm module
// and the helper's script. Nothing is fetched here, so the page's policy can forbid every request.
// This worker instantiates the module, and so does each helper.
let boot;
const booted = new Promise((resolve) => { boot = resolve; });
const compiled = booted.then((b) => b.module);
let helperUrl = null;
const ready = booted
  .then(({ module, helperSource }) => {
    helperUrl = URL.createObjectURL(new Blob([helperSource], { type: 'text/javascript' }));
    for (let k = 0; k < PRELOAD; k++) newHelper();
    return init({ module_or_path: module });
  })
  .then(() => Promise.all(pool.map((h) => h.loaded)))
  .then(() => post({ type: 'ready', fields: settingsFields() }));

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const yieldToEvents = () => new Promise((r) => setTimeout(r, 0));

// Watch the GPU device burn-wgpu asks for, so that losing it is reported with its reason.
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    gpuDevice = device;
    device.lost.then((info) => {
      if (gpuDevice !== device) return;
      running = false;
      post({ type: 'device-lost', reason: info.reason, message: info.message, iterations: session ? session.iterations() : 0 });
    });
    return device;
  };
}

// `auto` takes a hardware WebGPU adapter and never a software one (SwiftShader on a machine
// without a GPU: minutes per iteration where the CPU takes a second), saying so; `webgpu` takes
// whatever adapter the browser offers.
async function pickBackend(wanted) {
  if (wanted === 'cpu' || wanted === 'ndarray') return wanted;
  try {
    // Without an adapter burn's WebGPU set-up never settles: probe first, fall back to the CPU.
    const adapter = self.navigator.gpu ? await self.navigator.gpu.requestAdapter() : null;
    if (!adapter) return 'cpu';
    const software = adapter.info ? adapter.info.isFallbackAdapter : adapter.isFallbackAdapter;
    if (software && wanted !== 'webgpu') {
      post({ type: 'notice', message: "The browser's only WebGPU adapter is a software one, much slower than the CPU here: running on the CPU (pick \"WebGPU, even a software adapter\" to use it)." });
      return 'cpu';
    }
    return 'webgpu';
  } catch (e) {
    return 'cpu';
  }
}

// The distilled data and the session file of the state last read back, sent after each chunk:
// the page keeps the session file so that it can carry on in a new worker if this one dies.
function postSnapshot() {
  const d = session.distilled();
  post({ type: 'distilled', ...d }, [d.images.buffer, d.labels.buffer, d.lrs.buffer]);
  const bytes = session.sessionFile();
  post({ type: 'checkpoint', bytes, iterations: session.iterations() }, [bytes.buffer]);
}

// ---- helper workers (CPU backends) -------------------------------------------------------------
// The networks an iteration samples are independent: network j of each iteration goes to worker
// j mod (helpers + 1), 0 being this one. The engine averages them in order, so the result is the
// same as with no helper, bit for bit. Helpers start from the script the page handed over and are
// handed the compiled wasm module, so starting one makes no request; PRELOAD of them start with the
// page, more when a run asks for more. They are kept from one session to the next.
const PRELOAD = MAX_DEFAULT_WORKERS - 1; // with this worker, the page's largest default
let helpers = []; // those of the current run
const pool = [];
let nextCall = 0;

// How long a helper may stay silent before it is taken for dead: a worker that the browser stops
// without an error event would otherwise leave its call, and with it the run, pending for ever.
// Its share of an iteration may take `factor` times as long as this worker's share, never less
// than `minMs`, counted from the end of this worker's share; loading and `init` get `startMs`.
const helperWait = { factor: 20, minMs: 60000, startMs: 120000 };

function breakHelper(h, error) {
  if (h.broken) return;
  h.broken = error;
  for (const c of h.calls.values()) c.reject(error);
  h.calls.clear();
}

// Breaks those of `hs` that still have a call pending after `ms`; returns what cancels this.
function deadline(hs, ms) {
  const timer = setTimeout(() => {
    const error = new Error(`a helper worker stopped answering (no reply in ${Math.round(ms / 1000)} s)`);
    hs.filter((h) => h.calls.size).forEach((h) => breakHelper(h, error));
  }, ms);
  return () => clearTimeout(timer);
}

function newHelper() {
  const h = { worker: new Worker(helperUrl), calls: new Map(), broken: null };
  h.worker.onmessage = ({ data: m }) => {
    const c = h.calls.get(m.id);
    h.calls.delete(m.id);
    if (c && m.type === 'error') c.reject(new Error(`a helper worker failed: ${m.message}`));
    else if (c) c.resolve(m);
  };
  h.worker.onerror = (e) => breakHelper(h, new Error(`a helper worker failed: ${e.message || 'it could not start'}`));
  // Sends a message; resolves to the helper's reply to it.
  h.call = (msg) => new Promise((resolve, reject) => {
    if (h.broken) return reject(h.broken);
    const id = nextCall++;
    h.calls.set(id, { resolve, reject });
    h.worker.postMessage({ ...msg, id });
  });
  const cancel = deadline([h], helperWait.startMs);
  h.loaded = h.call({ type: 'hello' }).catch(() => null).finally(cancel);
  pool.push(h);
  return h;
}
function dropHelper(h) {
  h.worker.terminate();
  pool.splice(pool.indexOf(h), 1);
  helpers = helpers.filter((x) => x !== h);
}

function stopHelpers() {
  helpers = [];
}

// Helpers for a run on `backend`: `workers` in all counting this one, no more than the networks
// of an iteration. If one cannot start, the run stays in this worker.
async function startHelpers(backend, workers) {
  stopHelpers();
  const config = session.configJson();
  const cfg = JSON.parse(config);
  // A matching iteration draws one embedding network: nothing to share.
  const nets = cfg.known_init || cfg.objective === 'matching' ? 1 : cfg.nets_per_iteration;
  const count = Math.min((workers || 1) - 1, nets - 1);
  if (backend === 'webgpu' || count < 1) return;
  while (pool.length < count) newHelper();
  const chosen = pool.slice(0, count);
  const split = session.trainSplit();
  const module = await compiled;
  const cancel = deadline(chosen, helperWait.startMs);
  const started = await Promise.allSettled(chosen.map((h) => h.call({ type: 'init', module, backend, config, split })));
  cancel();
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    chosen.filter((_, k) => started[k].status === 'rejected').forEach(dropHelper);
    post({ type: 'notice', message: `${failed.reason.message}; running in one worker` });
    return;
  }
  helpers = chosen;
}

let breakNextHelperCall = false; // set by the test hook `fail-helper`
let silenceNextHelper = false; // set by the test hook `silence-helper`

function helperGradient(h, plan, j) {
  const init = breakNextHelperCall ? plan.inits[j].subarray(1) : plan.inits[j];
  breakNextHelperCall = false;
  if (silenceNextHelper) h.worker.terminate(); // no reply and no error event, ever
  silenceNextHelper = false;
  return h.call({ type: 'gradient', images: plan.images, labels: plan.labels, rawLrs: plan.rawLrs, init, batch: plan.batch }).then((m) => m.gradient);
}

// Helper k's share of a list with one entry per network (network j goes to worker j mod
// workers, 0 being this one).
const shareOf = (all, k, workers) => all.filter((_, j) => j % workers === k + 1);

// One private iteration shared with the helpers (src/web/workers/private.rs): they unroll their
// networks and report their patients' norms chunk by chunk, this worker turns every network's
// norms into clipping weights and draws the noise, each worker back-propagates its networks, and
// this one takes the step. Resolves to false when the run is done or its step failed. Awaits the
// helpers with the same deadlines as `runShared`; a helper's failure rejects with `fromHelper`.
async function privateIteration() {
  const workers = helpers.length + 1;
  const plan = await session.privatePlan(workers);
  if (!plan) return false;
  // Sends each helper `msg(k)`; its reply also waits for the share's, so that a failed share is
  // what a failure reports, and every rejection is awaited somewhere.
  let shared = null;
  const ask = (msg) => helpers.map((h, k) => {
    const reply = h.call(msg(k)).catch((e) => { e.fromHelper = true; throw e; });
    if (!shared) return reply;
    reply.catch(() => {}); // reported through the chain
    return shared[k].then(() => reply);
  });
  const answers = async (pending, t0) => {
    const cancel = deadline(helpers, Math.max(helperWait.minMs, helperWait.factor * (performance.now() - t0)));
    try {
      return await Promise.all(pending);
    } finally {
      cancel();
    }
  };
  shared = ask((k) => {
    const inits = shareOf(plan.inits, k, workers);
    if (breakNextHelperCall) inits[0] = inits[0].subarray(1);
    breakNextHelperCall = false;
    if (silenceNextHelper) helpers[k].worker.terminate(); // no reply and no error event, ever
    silenceNextHelper = false;
    return { type: 'share', images: plan.images, labels: plan.labels, rawLrs: plan.rawLrs, inits };
  });
  for (const chunk of plan.chunks) {
    const norms = ask(() => ({ type: 'norms', batch: chunk.batch, bounds: chunk.bounds }));
    const t0 = performance.now();
    session.privateNorms();
    const w = await session.privateWeights((await answers(norms, t0)).map((m) => m.norms));
    await answers(ask(() => ({ type: 'weights', w })), performance.now());
  }
  const noise = session.privateNoise();
  const parts = ask((k) => ({ type: 'private-gradients', noise: shareOf(noise, k, workers), scale: plan.scale, step: plan.step }));
  const t0 = performance.now();
  session.privateGradients();
  return session.privateApply((await answers(parts, t0)).map((m) => m.parts));
}

// Up to `n` private iterations shared with the helpers; resolves as `runShared`. A helper that
// fails or stays silent ends the sharing: this worker computes the same iteration alone (the same
// patients and noise) and the run carries on here.
async function runPrivateShared(n) {
  for (let k = 0; k < n; k++) {
    let stepped;
    try {
      stepped = await privateIteration();
    } catch (e) {
      if (!e.fromHelper) throw e;
      post({ type: 'notice', message: `${e.message}; carrying on in one worker` });
      [...helpers].filter((h) => h.broken).forEach(dropHelper);
      stopHelpers();
      stepped = await session.privateAlone();
    }
    if (!stepped) break;
  }
  return session.endChunk();
}

// Up to `n` iterations with the networks spread over this worker and the helpers; resolves to
// what `session.run(n)` resolves to. A helper that fails, or stays silent past its deadline, is
// dropped and its networks are computed here.
async function runShared(n) {
  if (session.privacy()) return runPrivateShared(n);
  for (let k = 0; k < n; k++) {
    const plan = await session.plan();
    if (!plan) break;
    const workers = helpers.length + 1;
    const pending = plan.inits.map((_, j) => (j % workers ? helperGradient(helpers[(j % workers) - 1], plan, j) : null));
    const grads = [];
    const t0 = performance.now();
    for (let j = 0; j < pending.length; j += workers) grads[j] = await session.gradient(j);
    const cancel = deadline(helpers, Math.max(helperWait.minMs, helperWait.factor * (performance.now() - t0)));
    const settled = await Promise.allSettled(pending);
    cancel();
    for (let j = 0; j < settled.length; j++) {
      if (pending[j] === null) continue;
      if (settled[j].status === 'fulfilled') grads[j] = settled[j].value;
      else {
        if (helpers.length) post({ type: 'notice', message: `${settled[j].reason.message}; carrying on in one worker` });
        [...helpers].filter((h) => h.broken).forEach(dropHelper);
        stopHelpers();
        grads[j] = await session.gradient(j);
      }
    }
    if (!(await session.apply(grads))) break;
  }
  return session.endChunk();
}

// The run in progress: its id (a cancelled or replaced run's loop sees a newer one and stops at
// the end of its chunk) and the promise of its loop (awaited before anything replaces it).
let runId = 0;
let loop = null;

function startLoop() {
  const id = ++runId;
  running = true;
  loop = runLoop(id).catch(fail);
}

// Ends the run in progress, if any, and waits until its last chunk is done: a new run, new data
// or a cancel never overlaps it.
async function stopLoop() {
  running = false;
  runId++;
  if (loop) await loop;
  loop = null;
}

async function runLoop(id) {
  startTime = performance.now();
  doneBefore = session.iterations();
  while (running && id === runId) {
    const r = helpers.length ? await runShared(CHUNK) : await session.run(CHUNK);
    const elapsed = (performance.now() - startTime) / 1000;
    post({ type: 'progress', reports: r.reports, iterations: r.iterations, total: r.total, elapsed, doneThisRun: r.iterations - doneBefore, epsilonSpent: r.epsilon_spent });
    if (r.device_lost) {
      running = false;
      post({ type: 'device-lost', reason: 'error', message: r.stopped, iterations: r.iterations });
      return;
    }
    postSnapshot();
    if (r.stopped) {
      running = false;
      post({ type: 'stopped', reason: r.stopped });
      return;
    }
    if (r.iterations >= r.total) {
      running = false;
      post({ type: 'finished', iterations: r.iterations });
      return;
    }
    await yieldToEvents(); // lets pause and cancel messages in
  }
  if (id === runId) post({ type: 'paused', iterations: session.iterations() }); // else: cancelled or replaced
}

function open(config) {
  stopHelpers();
  const json = JSON.stringify(config);
  // Names, classes, patient folders ('' for none) and bytes of a list of files.
  const columns = (files) => ({
    names: files.map((f) => f.name),
    classes: files.map((f) => f.cls),
    patients: files.map((f) => f.patient || ''),
    bytes: files.map((f) => new Uint8Array(f.bytes)),
  });
  if (source.demo) session = Session.demo(json);
  else {
    const c = columns(source.files);
    const test = source.test ? columns(source.test) : undefined;
    session = Session.fromFiles(c.names, c.classes, c.patients, c.bytes, json, source.pattern || undefined, source.csv || undefined, test);
  }
  post({ type: 'loaded', summary: session.summary(), config, attribution: source.demo ? demoAttribution() : undefined });
}

async function begin(backend, sessionFile, workers) {
  const chosen = await pickBackend(backend);
  const total = await session.start(chosen, sessionFile);
  await startHelpers(session.backend(), workers);
  const objective = JSON.parse(session.configJson()).objective;
  post({ type: 'started', backend: session.backend(), workers: helpers.length + 1, total, iterations: session.iterations(), resumed: !!sessionFile, privacy: session.privacy(), resumedSession: session.resumedSession(), objective });
  postSnapshot();
}

// A load that carries `start` ({backend, workers}) starts a run on the data once they are
// loaded: the start click and its data travel together, so a run never starts from a load the
// user did not ask to start.
const handlers = {
  async load({ files, pattern, csv, test, config, start }) {
    await stopLoop();
    source = { files, pattern, csv, test };
    open(config);
    if (start) await handlers.start(start);
  },
  async demo({ config, start }) {
    await stopLoop();
    source = { demo: true };
    open(config);
    if (start) await handlers.start(start);
  },
  async start({ backend, workers }) {
    await stopLoop();
    await begin(backend, undefined, workers);
    startLoop();
  },
  // Loads the data again with a session file's settings and continues from where it was saved
  // (or only restores it, when `run` is false).
  async resume({ bytes, backend, run, files, pattern, csv, test, demo, workers }) {
    await stopLoop();
    if (files) source = { files, pattern, csv, test };
    if (demo) source = { demo: true };
    if (!source) throw new Error('load the data the session was distilled from first');
    open(JSON.parse(sessionConfig(new Uint8Array(bytes))));
    await begin(backend, new Uint8Array(bytes), workers);
    if (run === false) {
      post({ type: 'restored', iterations: session.iterations() });
      return;
    }
    startLoop();
  },
  async continue() {
    if (running || !session) return;
    // A pause asked for during the last chunk: that chunk ends first, and without a 'paused'.
    runId++;
    if (loop) await loop;
    if (running) return;
    startLoop();
  },
  async pause() {
    running = false;
  },
  // Answered once the cancelled run's last chunk is done, so the page's buttons follow the run.
  async cancel() {
    await stopLoop();
    post({ type: 'cancelled', iterations: session ? session.iterations() : 0 });
  },
  async evaluate({ audit }) {
    post({ type: 'evaluation', evaluation: await session.evaluate(), audit: !!audit });
    if (audit) await handlers.audit();
  },
  async audit() {
    post({ type: 'audit-started' });
    const a = await session.audit();
    const buffers = a.gallery.flatMap((g) => [g.distilled, g.memberL2, g.memberSsim, g.holdoutL2, g.holdoutSsim].map((x) => x.buffer));
    post({ type: 'audit', ...a }, buffers);
  },
  // The privacy plan of a configuration on the loaded data's training patients, before a run.
  async 'privacy-plan'({ config, patients, images, classes }) {
    try {
      post({ type: 'privacy-plan', plan: privacyPlan(JSON.stringify(config), patients, images, classes) });
    } catch (e) {
      post({ type: 'privacy-plan', error: e.message || String(e) });
    }
  },
  async export() {
    const bytes = session.export();
    post({ type: 'archive', bytes }, [bytes.buffer]);
  },
  // For tests: the next network handed to a helper is cut short, so that the helper fails.
  async 'fail-helper'() {
    breakNextHelperCall = true;
  },
  // For tests: the next helper handed a network stops without a word, as a worker the browser
  // kills would; helpers are then given up on after `waitMs` of silence.
  async 'silence-helper'({ waitMs }) {
    Object.assign(helperWait, { factor: 1, minMs: waitMs });
    silenceNextHelper = true;
  },
  // For tests: makes the GPU device go away, as a driver reset or an unplugged GPU would.
  async 'lose-device'() {
    if (gpuDevice) gpuDevice.destroy();
  },
};

function fail(e) {
  running = false;
  // A trap (a Rust panic) leaves the wasm instance unusable: the page must start a new worker.
  post({ type: 'error', message: e && e.message ? e.message : String(e), fatal: e instanceof WebAssembly.RuntimeError });
}

self.onmessage = async (event) => {
  if (event.data.type === 'boot') return boot(event.data);
  try {
    await ready;
    await handlers[event.data.type](event.data);
  } catch (e) {
    fail(e);
  }
};
