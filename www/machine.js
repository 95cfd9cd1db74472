// The page's controls as one state machine. `next(state, event)` is the only way the state
// changes; `view(state)` says which controls are enabled and what every status line reads. The
// page renders the view after each event and never sets a button or a status line by hand.
//
// The state has independent parts:
//   engine: loading → ready (the wasm engine's worker is up)
//   data:   none → loading → ready | refused      (what the engine holds to distil from)
//   run:    idle → starting → running ⇄ pausing → paused → running …
//           running | pausing | paused → cancelling → cancelled; running → finished | stopped | failed
//   task:   null | evaluating | auditing           (beside the run, never during it)
//   result: whether the engine holds a distilled state (to evaluate, audit, save, download)
//   settings: the first problem with the settings as typed, or null
//   lines:  the text of each panel's status line (and of the notice under the run), and whether
//           it is an error
//
// An event the state does not allow (a click on a control the view disables, a drop of a folder
// while a run is on) leaves the state as it is, with the reason in `refusal`.

export const initial = Object.freeze({
  engine: 'loading',
  data: 'none',
  run: 'idle',
  runBefore: 'idle',
  task: null,
  result: false,
  settings: null,
  lines: Object.freeze({
    data: { text: 'loading the engine…', error: false },
    settings: { text: '', error: false },
    run: { text: '', error: false },
    evaluate: { text: '', error: false },
    audit: { text: '', error: false },
    download: { text: '', error: false },
    notice: { text: '', error: false },
  }),
  refusal: null,
});

const BUSY = ['starting', 'running', 'pausing', 'cancelling'];
/** A run is under way (the engine is computing it, or about to). */
export const busy = (s) => BUSY.includes(s.run);
const quiet = (s) => s.engine === 'ready' && s.task === null && !busy(s);

/** What the user may do in state `s`: each entry is null when allowed, else why not. */
export function allowed(s) {
  const engine = s.engine !== 'ready' ? 'the engine is still loading' : null;
  const idle = engine || (busy(s) ? 'a run is under way: pause or cancel it first' : s.task ? `wait for the ${s.task === 'evaluating' ? 'evaluation' : 'audit'} to end` : null);
  const data = s.data === 'ready' ? null : s.data === 'loading' ? 'the data are still loading' : 'load the data first';
  const result = s.result ? null : 'nothing has been distilled yet';
  return {
    load: idle || (s.data === 'loading' ? 'the data are still loading' : null),
    start: idle || data || (s.settings ? `fix the settings first: ${s.settings}` : null),
    pause: s.run === 'running' ? null : 'no run is under way',
    resume: s.run !== 'paused' ? 'no run is paused' : (s.task ? idle : null) || data,
    cancel: ['running', 'pausing', 'paused'].includes(s.run) ? null : 'no run to cancel',
    evaluate: idle || result,
    audit: idle || result,
    download: idle || result,
    save: result,
    resumeSession: idle || data,
  };
}

/** Which controls are enabled, and the pause button's label. */
export function view(s) {
  const a = allowed(s);
  return {
    load: !a.load,
    start: !a.start,
    pause: { enabled: s.run === 'paused' ? !a.resume : !a.pause, label: s.run === 'paused' ? 'resume' : 'pause' },
    cancel: !a.cancel,
    evaluate: !a.evaluate,
    audit: !a.audit,
    download: !a.download,
    save: !a.save,
    resumeSession: !a.resumeSession,
    lines: s.lines,
  };
}

const line = (s, panel, text, error = false) => ({ ...s, lines: { ...s.lines, [panel]: { text, error } } });
const refuse = (s, why) => ({ ...s, refusal: why });

/** The panel whose status line reports a failure in state `s`: the activity under way. */
export function panelOf(s) {
  if (s.data === 'loading') return 'data';
  if (busy(s)) return 'run';
  if (s.task === 'evaluating') return 'evaluate';
  if (s.task === 'auditing') return 'audit';
  return 'run';
}

/** The state after `e`. User actions: load, start, pause, resume, cancel, evaluate, audit,
 *  download, settings; `note` updates a line. Engine replies: ready, loaded, refused, started, checkpoint, progress,
 *  paused, cancelled, finished, stopped, evaluation, audited, error, fatal, restored. */
export function next(s0, e) {
  const s = { ...s0, refusal: null };
  const a = allowed(s);
  switch (e.type) {
    // ---- the user ----
    case 'load':
      if (a.load) return refuse(s0, a.load);
      return line({ ...s, data: 'loading' }, 'data', e.text || 'reading the files…');
    case 'start':
      if (a.start) return refuse(s0, a.start);
      return line(line({ ...s, run: 'starting', runBefore: s.run }, 'run', 'starting…'), 'evaluate', s.lines.evaluate.text ? 'the evaluation shown is of an earlier state; evaluate again for the new run' : '');
    case 'pause':
      if (a.pause) return refuse(s0, a.pause);
      return line({ ...s, run: 'pausing' }, 'run', `${s.lines.run.text.split(' · ')[0]} · pausing at the end of this chunk…`);
    case 'resume':
      if (a.resume) return refuse(s0, a.resume);
      return line({ ...s, run: 'running' }, 'run', 'resuming…');
    case 'cancel':
      if (a.cancel) return refuse(s0, a.cancel);
      return line({ ...s, run: 'cancelling' }, 'run', 'cancelling at the end of this chunk…');
    case 'evaluate':
      if (a.evaluate) return refuse(s0, a.evaluate);
      return line({ ...s, task: 'evaluating' }, 'evaluate', 'training fresh networks on the distilled set and on the baselines…');
    case 'audit':
      if (a.audit) return refuse(s0, a.audit);
      return line({ ...s, task: 'auditing' }, 'audit', 'auditing: nearest real patches, near copies, membership attack…');
    case 'download':
      return a.download ? refuse(s0, a.download) : line(s, 'download', '');
    case 'note':
      // Progress of what the state already says is under way (files read so far).
      return line(s, e.panel, e.text);
    case 'settings':
      return line({ ...s, settings: e.problem || null }, 'settings', e.problem || '', !!e.problem);

    // ---- the engine ----
    case 'ready':
      // A worker started again after a failure says ready too: the page's state stands.
      if (s.engine === 'ready') return s;
      return line({ ...s, engine: 'ready' }, 'data', 'no data loaded yet');
    case 'engine-failed':
      return line({ ...s, engine: 'failed' }, 'data', e.message, true);
    case 'loaded': {
      // The engine replaced its session: the previous run and its result are gone.
      const starting = s.run === 'starting';
      let t = line({ ...s, data: 'ready', result: false, run: starting ? 'starting' : 'idle' }, 'data', e.text);
      if (!starting) t = line(line(t, 'run', ''), 'evaluate', '');
      return line(t, 'audit', '');
    }
    case 'refused': {
      // A load that failed: nothing of it is used; the engine still holds its previous session.
      const run = s.run === 'starting' ? s.runBefore : s.run;
      const t = line({ ...s, data: 'refused', run }, 'data', e.message, true);
      return s.run === 'starting' ? line(t, 'run', 'not started: the data could not be loaded (see Data)') : t;
    }
    case 'started':
      return line({ ...s, run: 'running' }, 'run', e.text || 'running…');
    case 'checkpoint':
      return { ...s, result: true };
    case 'progress':
      if (s.run !== 'running' && s.run !== 'pausing') return s;
      return line(s, 'run', s.run === 'pausing' ? `${e.text} · pausing at the end of this chunk…` : e.text);
    case 'paused':
      if (s.run !== 'running' && s.run !== 'pausing') return s; // a cancel or a new run overtook it
      return line({ ...s, run: 'paused' }, 'run', `paused at iteration ${e.iterations}`);
    case 'restored':
      return line({ ...s, run: 'paused' }, 'run', `restored at iteration ${e.iterations}: resume continues on the CPU`);
    case 'cancelled':
      return line({ ...s, run: 'cancelled' }, 'run', s.result ? `cancelled at iteration ${e.iterations}; the last state is kept for evaluation and download` : `cancelled at iteration ${e.iterations}; nothing was distilled`);
    case 'finished':
      return line({ ...s, run: 'finished' }, 'run', `${s.lines.run.text.split(' · about')[0]} · finished after ${e.iterations} iterations`);
    case 'stopped':
      return line({ ...s, run: 'stopped' }, 'run', `stopped: ${e.reason}. The last good state is kept for download.`, true);
    case 'evaluation':
      // The audit follows the evaluation in the same request.
      return e.audit
        ? line(line({ ...s, task: 'auditing' }, 'evaluate', e.text), 'audit', 'auditing: nearest real patches, near copies, membership attack…')
        : line({ ...s, task: null }, 'evaluate', e.text);
    case 'audited':
      return line({ ...s, task: null }, 'audit', e.text);
    case 'error': {
      const panel = panelOf(s);
      if (panel === 'data') return next(s, { type: 'refused', message: e.message });
      let t = line(s, panel, e.message, true);
      if (panel === 'run') t = { ...t, run: busy(s) ? 'failed' : s.run };
      if (panel === 'evaluate' || panel === 'audit') t = { ...t, task: null };
      return t;
    }
    case 'device-lost':
      // The run goes on, on the CPU, from the last state the page kept.
      return line({ ...s, run: 'starting', runBefore: 'idle' }, 'run', `the GPU was lost: continuing on the CPU from iteration ${e.iterations}…`);
    case 'fatal':
      // The engine's worker is gone; a new one restores the last state (then `restored`), or,
      // without one, needs the data again.
      return e.restoring
        ? line({ ...s, run: 'starting', runBefore: 'idle', task: null }, 'run', `${e.message}; restoring the state of iteration ${e.iterations}`, true)
        : line({ ...s, run: 'failed', data: 'none', result: false, task: null }, panelOf(s), `${e.message}; please load the data again`, true);
    default:
      throw new Error(`unknown event ${e.type}`);
  }
}
