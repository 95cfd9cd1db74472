// The Web Worker that owns the wasm engine; the page only sends it messages, so the UI thread
// never blocks. Protocol: see the `handlers` below; every reply has a `type`.
import init, { Session, demoAttribution } from '../pkg/anondistill.js';

const CHUNK = 2; // outer iterations between progress messages
let session = null;
let running = false;
let startTime = 0;
let doneBefore = 0;
const ready = init().then(() => post({ type: 'ready' }));

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const yieldToEvents = () => new Promise((r) => setTimeout(r, 0));

async function pickBackend(wanted) {
  if (wanted === 'cpu') return 'cpu';
  try {
    // Without an adapter burn's WebGPU set-up never settles: probe first, fall back to the CPU.
    const adapter = self.navigator.gpu ? await self.navigator.gpu.requestAdapter() : null;
    return adapter ? 'webgpu' : 'cpu';
  } catch (e) {
    return 'cpu';
  }
}

function distilledMessage() {
  const d = session.distilled();
  return { type: 'distilled', ...d };
}

async function runLoop() {
  startTime = performance.now();
  doneBefore = session.iterations();
  while (running) {
    const r = await session.run(CHUNK);
    const elapsed = (performance.now() - startTime) / 1000;
    post({ type: 'progress', reports: r.reports, iterations: r.iterations, total: r.total, elapsed, doneThisRun: r.iterations - doneBefore });
    const d = distilledMessage();
    post(d, [d.images.buffer, d.labels.buffer, d.lrs.buffer]);
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

const handlers = {
  async load({ files, config }) {
    session = Session.fromFiles(files.map((f) => f.name), files.map((f) => f.cls), files.map((f) => new Uint8Array(f.bytes)), JSON.stringify(config));
    post({ type: 'loaded', summary: session.summary() });
  },
  async demo({ config }) {
    session = Session.demo(JSON.stringify(config));
    post({ type: 'loaded', summary: session.summary(), attribution: demoAttribution() });
  },
  async start({ backend }) {
    const chosen = await pickBackend(backend);
    const total = await session.start(chosen);
    post({ type: 'started', backend: session.backend(), total });
    const d = distilledMessage();
    post(d, [d.images.buffer, d.labels.buffer, d.lrs.buffer]);
    running = true;
    runLoop().catch(fail);
  },
  async resume() {
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
  async evaluate() {
    post({ type: 'evaluation', evaluation: await session.evaluate() });
  },
  async export() {
    const bytes = session.export();
    post({ type: 'archive', bytes }, [bytes.buffer]);
  },
};

function fail(e) {
  running = false;
  post({ type: 'error', message: e && e.message ? e.message : String(e) });
}

self.onmessage = async (event) => {
  try {
    await ready;
    await handlers[event.data.type](event.data);
  } catch (e) {
    fail(e);
  }
};
