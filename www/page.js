// What the panels share: the element lookup, the page's data (`store`), the one state machine
// (`dispatch` is the only way its state changes) and the render that derives every control and
// status line from it.
import { initial, next, view } from './machine.js';

export const $ = (id) => document.getElementById(id);

// The page's data beside the controls' state: files, summary, the last session file, losses…
export const store = { files: [], layoutSkipped: [], testFiles: [], testSkipped: [], groupsCsv: null, renames: {}, classes: [], losses: [], demo: false, checkpoint: null };
window.anondistill = store; // for tests and the curious

let state = initial;
/** The controls' state (`www/machine.js`). */
export const current = () => state;

let sender = null;
/** Sends a message to the engine's worker (set up by `engine.js`). */
export const send = (msg, transfer) => sender(msg, transfer);
export const setSender = (f) => { sender = f; };

/** Applies `e` to the state and renders; returns whether it was allowed. A refused user action
 *  (a folder dropped during a run) says why in the notice line. */
export function dispatch(e) {
  state = next(state, e);
  const refusal = state.refusal;
  if (refusal) state = next(state, { type: 'note', panel: 'notice', text: `${refusal}.` });
  store.machine = state;
  render();
  return !refusal;
}

const LINES = { data: 'data-status', settings: 'settings-status', run: 'run-status', evaluate: 'eval-status', audit: 'audit-status', download: 'download-status', notice: 'notice' };

function render() {
  const v = view(state);
  for (const id of ['start', 'cancel', 'evaluate', 'audit', 'download']) $(id).disabled = !v[id];
  $('save-session').disabled = !v.save;
  $('pause').disabled = !v.pause.enabled;
  $('pause').textContent = v.pause.label;
  for (const id of ['folder-input', 'files-input', 'test-input', 'groups-input', 'demo-button', 'group-pattern', 'groups-clear', 'test-clear']) $(id).disabled = !v.load;
  $('session-input').disabled = !v.resumeSession;
  for (const label of document.querySelectorAll('label.button')) label.classList.toggle('disabled', label.querySelector('input').disabled);
  for (const input of $('classes').querySelectorAll('input')) input.disabled = !v.load || store.demo;
  for (const [panel, id] of Object.entries(LINES)) {
    const l = v.lines[panel];
    $(id).textContent = l.text;
    $(id).classList.toggle('error', l.error);
  }
}
