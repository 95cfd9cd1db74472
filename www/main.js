// The page: loads the engine into a worker and routes its messages to the panels (`data.js`,
// `settings.js`, `run.js`, `results.js`); the controls follow one state machine (`machine.js`,
// through `page.js`). Everything stays in this tab.
import './style.css';
import { defaultWorkers } from './defaults.js';
import { $, store, dispatch, setSender, current } from './page.js';
import { applyLimits, check, askPrivacyPlan, privacyPlanAnswer, setForm } from './settings.js';
import { showSummary } from './data.js';
import * as run from './run.js';
import * as results from './results.js';
import workerSource from 'workers/worker.js?source';
import helperSource from 'workers/helper.js?source';

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
  worker.onmessage = (e) => handlers[e.data.type](e.data);
  worker.onerror = (e) => handlers.error({ message: `the engine failed: ${e.message}`, fatal: true });
  worker.postMessage({ type: 'boot', module: engine.module, helperSource });
  store.worker = worker;
}
// Before the engine is compiled, messages wait for it (in order).
setSender((msg, transfer) => (worker ? worker.postMessage(msg, transfer || []) : engineLoaded.then(() => worker.postMessage(msg, transfer || []))));

// A new worker after the old one died: restores the last session file, on the CPU, and
// continues the run when `go` is set.
function recover(go) {
  spawnWorker();
  run.resumeFrom(store.checkpoint.bytes, 'cpu', go).catch((e) => dispatch({ type: 'error', message: `could not restore the last state: ${e.message}` }));
}

const handlers = {
  ready(m) {
    applyLimits(m.fields);
    dispatch({ type: 'ready' });
    document.body.dataset.ready = '1';
  },
  loaded(m) {
    if (m.config) setForm(m.config);
    // The engine replaced its session: the last state kept is of the previous data.
    store.checkpoint = null;
    dispatch({ type: 'loaded', text: showSummary(m.summary) });
    if (m.attribution) $('attribution').textContent = m.attribution;
    askPrivacyPlan(current().settings);
  },
  started: run.started,
  checkpoint: run.checkpoint,
  progress(m) {
    if (store.audit) {
      store.audit = null;
      dispatch({ type: 'note', panel: 'audit', text: 'the audit shown is of an earlier state and is left out of the download; run it again for this one' });
    }
    if (store.evaluated) {
      store.evaluated = false;
      dispatch({ type: 'note', panel: 'evaluate', text: 'the evaluation shown is of an earlier state and is left out of the download; evaluate again for this one' });
    }
    run.progress(m);
  },
  distilled: run.distilled,
  restored: (m) => dispatch({ type: 'restored', iterations: m.iterations }),
  'device-lost'(m) {
    run.deviceLost(m);
    dispatch({ type: 'device-lost', iterations: store.checkpoint ? store.checkpoint.iterations : 0 });
    recover(true);
  },
  finished: (m) => dispatch({ type: 'finished', iterations: m.iterations }),
  paused: (m) => dispatch({ type: 'paused', iterations: m.iterations }),
  cancelled: (m) => dispatch({ type: 'cancelled', iterations: m.iterations }),
  stopped: (m) => dispatch({ type: 'stopped', reason: m.reason }),
  evaluation: results.evaluation,
  'audit-started'() {},
  audit: results.audit,
  notice(m) {
    dispatch({ type: 'note', panel: 'notice', text: m.message });
  },
  archive: results.archive,
  'privacy-plan': privacyPlanAnswer,
  error(m) {
    if (m.fatal && current().run === 'running' && store.backend === 'webgpu') {
      // A trap while the GPU was computing is how burn-wgpu reports a lost device.
      handlers['device-lost']({ reason: 'the GPU stopped answering' });
      return;
    }
    if (!m.fatal) {
      dispatch({ type: 'error', message: m.message });
      return;
    }
    // The engine cannot be used any more: a new one restores the last good state, or, without
    // one, waits for the data again.
    if (store.checkpoint) {
      dispatch({ type: 'fatal', restoring: true, message: m.message, iterations: store.checkpoint.iterations });
      recover(false);
    } else {
      store.files = [];
      store.demo = false;
      dispatch({ type: 'fatal', message: m.message });
      spawnWorker();
    }
  },
};

$('settings').elements.workers.value = defaultWorkers(navigator.hardwareConcurrency);
check();
engineLoaded.then(spawnWorker, (e) => dispatch({ type: 'engine-failed', message: `The engine could not be loaded: ${e.message}. Reload the page.` }));
