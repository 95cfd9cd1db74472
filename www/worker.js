// The Web Worker that owns the wasm engine; the page only sends it messages, so the UI thread
// never blocks. Protocol: see the `handlers` below; every reply has a `type`.
import init, { Session, demoAttribution, sessionConfig } from '../pkg/anondistill.js';

const CHUNK = 2; // outer iterations between progress messages
let session = null;
let source = null; // how the current session's data came in: { files } or { demo: true }
let running = false;
let startTime = 0;
let doneBefore = 0;
let gpuDevice = null;
const ready = init().then(() => post({ type: 'ready' }));

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

async function pickBackend(wanted) {
  if (wanted === 'cpu' || wanted === 'ndarray') return wanted;
  try {
    // Without an adapter burn's WebGPU set-up never settles: probe first, fall back to the CPU.
    const adapter = self.navigator.gpu ? await self.navigator.gpu.requestAdapter() : null;
    return adapter ? 'webgpu' : 'cpu';
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

async function runLoop() {
  startTime = performance.now();
  doneBefore = session.iterations();
  while (running) {
    const r = await session.run(CHUNK);
    const elapsed = (performance.now() - startTime) / 1000;
    post({ type: 'progress', reports: r.reports, iterations: r.iterations, total: r.total, elapsed, doneThisRun: r.iterations - doneBefore });
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
  post({ type: 'paused', iterations: session.iterations() });
}

function open(config) {
  const json = JSON.stringify(config);
  session = source.demo
    ? Session.demo(json)
    : Session.fromFiles(source.files.map((f) => f.name), source.files.map((f) => f.cls), source.files.map((f) => new Uint8Array(f.bytes)), json);
  post({ type: 'loaded', summary: session.summary(), config, attribution: source.demo ? demoAttribution() : undefined });
}

async function begin(backend, sessionFile) {
  const chosen = await pickBackend(backend);
  const total = await session.start(chosen, sessionFile);
  post({ type: 'started', backend: session.backend(), total, iterations: session.iterations(), resumed: !!sessionFile });
  postSnapshot();
}

const handlers = {
  async load({ files, config }) {
    source = { files };
    open(config);
  },
  async demo({ config }) {
    source = { demo: true };
    open(config);
  },
  async start({ backend }) {
    await begin(backend);
    running = true;
    runLoop().catch(fail);
  },
  // Loads the data again with a session file's settings and continues from where it was saved
  // (or only restores it, when `run` is false).
  async resume({ bytes, backend, run, files, demo }) {
    if (files) source = { files };
    if (demo) source = { demo: true };
    if (!source) throw new Error('load the data the session was distilled from first');
    open(JSON.parse(sessionConfig(new Uint8Array(bytes))));
    await begin(backend, new Uint8Array(bytes));
    if (run === false) {
      post({ type: 'restored', iterations: session.iterations() });
      return;
    }
    running = true;
    runLoop().catch(fail);
  },
  async continue() {
    if (running || !session) return;
    running = true;
    runLoop().catch(fail);
  },
  async pause() {
    running = false;
  },
  async cancel() {
    running = false;
    post({ type: 'cancelled', iterations: session ? session.iterations() : 0 });
  },
  async evaluate({ audit }) {
    post({ type: 'evaluation', evaluation: await session.evaluate() });
    if (audit) await handlers.audit();
  },
  async audit() {
    post({ type: 'audit-started' });
    const a = await session.audit();
    const buffers = a.gallery.flatMap((g) => [g.distilled, g.memberL2, g.memberSsim, g.holdoutL2, g.holdoutSsim].map((x) => x.buffer));
    post({ type: 'audit', ...a }, buffers);
  },
  async export() {
    const bytes = session.export();
    post({ type: 'archive', bytes }, [bytes.buffer]);
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
  try {
    await ready;
    await handlers[event.data.type](event.data);
  } catch (e) {
    fail(e);
  }
};
