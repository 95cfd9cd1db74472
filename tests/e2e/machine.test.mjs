// The page's state machine on its own (www/machine.js, no browser): the defects the random-click
// test found in the page as it was, as transitions, and random event sequences against the
// rules the view must keep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initial, next, view, busy } from '../../www/machine.js';
import { fmt, pct1 } from '../../www/format.js';

const run = (events, s = initial) => events.reduce((st, e) => next(st, typeof e === 'string' ? { type: e } : e), s);
const ready = run(['ready', 'load', { type: 'loaded', text: '400 images' }]);

test('a refused load leaves nothing that can start, and a later good load starts nothing', () => {
  const refused = run(['load', { type: 'refused', message: 'normal/p1/left is a folder inside the patient folder normal/p1' }], run(['ready']));
  assert.equal(view(refused).start, false);
  assert.equal(view(refused).cancel, false);
  assert.equal(next(refused, { type: 'start' }).refusal, 'load the data first');
  assert.deepEqual(refused.lines.data, { text: 'normal/p1/left is a folder inside the patient folder normal/p1', error: true });
  assert.equal(refused.lines.run.text, '', 'a load error stays in the data panel');
  const good = run(['load', { type: 'loaded', text: '12 images' }], refused);
  assert.equal(good.run, 'idle');
  assert.equal(view(good).start, true);
});

test('pause, then start: the new run reads "pause"', () => {
  const paused = run(['start', { type: 'started', text: '' }, 'pause', { type: 'paused', iterations: 4 }], ready);
  assert.equal(view(paused).pause.label, 'resume');
  const again = run(['start', { type: 'loaded', text: '' }, { type: 'started', text: '' }], paused);
  assert.deepEqual(view(again).pause, { enabled: true, label: 'pause' });
});

test('nothing else runs beside a run, an evaluation or an audit', () => {
  const starting = run(['start'], ready);
  for (const a of ['start', 'load', 'evaluate', 'audit', 'cancel', 'download']) assert.ok(next(starting, { type: a }).refusal, `${a} while starting`);
  const evaluating = run([{ type: 'started', text: '' }, 'checkpoint', { type: 'finished', iterations: 2 }, 'evaluate'], starting);
  for (const a of ['start', 'load', 'audit', 'download']) assert.ok(next(evaluating, { type: a }).refusal, `${a} while evaluating`);
  const failed = next(evaluating, { type: 'error', message: 'no holdout' });
  assert.equal(failed.task, null);
  assert.deepEqual(failed.lines.evaluate, { text: 'no holdout', error: true });
});

test('a cancel before anything was distilled does not promise a state to evaluate', () => {
  const s = run(['start', { type: 'started', text: '' }, 'cancel', { type: 'cancelled', iterations: 0 }], ready);
  assert.match(s.lines.run.text, /nothing was distilled/);
  assert.equal(view(s).evaluate, false);
});

test('random event sequences keep the view\'s rules', () => {
  const user = ['load', 'start', 'pause', 'resume', 'cancel', 'evaluate', 'audit', 'download'];
  const engine = [{ type: 'loaded', text: 'x' }, { type: 'refused', message: 'bad' }, { type: 'started', text: 'x' }, { type: 'checkpoint' },
    { type: 'progress', text: 'x' }, { type: 'paused', iterations: 1 }, { type: 'cancelled', iterations: 1 }, { type: 'finished', iterations: 1 },
    { type: 'evaluation', audit: true, text: 'x' }, { type: 'audited', text: 'x' }, { type: 'error', message: 'x' }, { type: 'settings', problem: 'steps = 0' }, { type: 'settings' }];
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let walk = 0; walk < 200; walk++) {
    let s = run(['ready']);
    for (let k = 0; k < 60; k++) {
      const pool = rand() < 0.5 ? user : engine;
      const e = pool[Math.floor(rand() * pool.length)];
      s = next(s, typeof e === 'string' ? { type: e } : e);
      const v = view(s);
      if (v.start) assert.ok(s.data === 'ready' && !s.settings && !busy(s) && s.task === null, JSON.stringify(s));
      if (v.pause.label === 'resume') assert.equal(s.run, 'paused');
      if (v.evaluate || v.download) assert.ok(s.result && !busy(s) && s.task === null);
      if (v.load) assert.ok(!busy(s) && s.task === null);
      for (const l of Object.values(s.lines)) if (l.error) assert.notEqual(l.text, '');
    }
  }
});

test('times and percentages read right', () => {
  // "2 min 60 s" before: the seconds were rounded after the minutes were taken.
  assert.equal(fmt(179.6), '3 min 0 s');
  assert.equal(fmt(59.96), '60.0 s');
  assert.equal(fmt(61.2), '1 min 1 s');
  // The class line said 80.3 % where the engine's warning said 80.2 % (recall 0.8025).
  assert.equal(pct1(0.8025), '80.2');
  assert.equal(pct1(0.8035), '80.3');
  assert.equal(pct1(0.8075), '80.8');
  assert.equal(pct1(0.5), '50.0');
  assert.equal(pct1(0.12345), '12.3');
});
