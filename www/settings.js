// The settings panel: the fields' ranges come from the engine's one table (`config::LIMITS`,
// sent with the worker's `ready`); each value is checked as typed, the first problem is the
// settings line and keeps start disabled; and, with privacy on, the plan in words.
import { $, store, send, current, dispatch } from './page.js';
import { busy } from './machine.js';

const form = () => $('settings');
const FIELDS = ['images_per_class_per_step', 'steps', 'epochs', 'max_iterations', 'nets_per_iteration', 'image_size', 'lenet_width', 'seed', 'epsilon', 'draws'];

/** Sets every number field's limits from the engine's table. */
export function applyLimits(fields) {
  store.limits = Object.fromEntries(fields.limits.map((l) => [l.key, l]));
  store.limits.workers = { key: 'workers', label: 'CPU workers', min: 1, max: fields.max_workers, whole: true, why: '' };
  store.matchingIterations = fields.matching_iterations;
  for (const key of [...FIELDS, 'workers']) {
    const l = store.limits[key];
    const input = form().elements[key];
    input.min = l.min;
    input.max = l.max;
    input.step = l.whole ? '1' : 'any';
  }
  check();
}

const label = (key) => (store.limits && store.limits[key] ? store.limits[key].label : key);

// The value of field `key` as typed, or an error that names the field as the page labels it and
// the value as typed.
function number(key) {
  const input = form().elements[key];
  const text = String(input.value).trim();
  // A number field holding letters reads as "": the browser says so in `badInput`.
  if (input.validity && input.validity.badInput) throw new Error(`${label(key)}: what is typed is not a number`);
  if (text === '') throw new Error(`${label(key)} is empty`);
  const n = Number(text);
  const l = store.limits && store.limits[key];
  if (!Number.isFinite(n)) throw new Error(`${label(key)} = ${text} is not a number`);
  if (l && l.whole && !Number.isInteger(n)) throw new Error(`${label(key)} = ${text} is not a whole number`);
  if (l && (n < l.min || n > l.max)) throw new Error(`${label(key)} = ${text} is outside ${l.min.toLocaleString('en')} to ${l.max.toLocaleString('en')}${l.why ? `: ${l.why}` : ''}`);
  return n;
}

/** The settings as typed: the engine's configuration, the backend and the CPU workers; throws
 *  with the first problem. */
export function readSettings() {
  const f = new FormData(form());
  const objective = f.get('objective');
  // The replay's own fields are hidden for matching: unused, so neither read nor checked there
  // (a value the user cannot see must not block a run); the engine's defaults fill them.
  const replay = (key) => (objective === 'matching' ? undefined : number(key));
  return {
    config: {
      objective,
      images_per_class_per_step: number('images_per_class_per_step'),
      steps: number('steps'),
      epochs: replay('epochs'),
      max_iterations: number('max_iterations'),
      nets_per_iteration: replay('nets_per_iteration'),
      image_size: number('image_size'),
      net: f.get('net'),
      lenet_width: number('lenet_width'),
      seed: number('seed'),
      balance_classes: f.get('balance_classes') === 'true',
      privacy: privacyOf(f, objective),
    },
    backend: f.get('backend'),
    workers: number('workers'),
  };
}

// The privacy guarantee as the engine's configuration takes it: undefined when off, else the
// epsilon picked or typed and, for matching, its releases (δ, the clipping norm and the sampling
// rate take the engine's defaults).
function privacyOf(f, objective) {
  const choice = f.get('privacy');
  if (choice === 'off' || choice === null) return undefined;
  const epsilon = choice === 'custom' ? number('epsilon') : Number(choice);
  return objective === 'matching' ? { epsilon, draws: number('draws') } : { epsilon };
}

// Which fields the objective uses: epochs and networks per iteration belong to the unrolled
// replay; the releases to private matching.
function showFields() {
  const f = form().elements;
  const matching = f.objective.value === 'matching';
  for (const label of form().querySelectorAll('[data-unrolled-only]')) label.hidden = matching;
  $('epsilon-label').hidden = f.privacy.value !== 'custom';
  $('draws-label').hidden = !matching || f.privacy.value === 'off';
}

// The iterations field follows the objective while it holds the other objective's default (the
// page's for the replay, the engine's for matching); a number the user typed stays.
function objectiveChanged() {
  const input = form().elements.max_iterations;
  const defaults = { unrolled: input.defaultValue, matching: String(store.matchingIterations) };
  const now = form().elements.objective.value;
  const other = now === 'matching' ? 'unrolled' : 'matching';
  if (store.matchingIterations && input.value === defaults[other]) input.value = defaults[now];
}

/** Checks the settings as typed: the first problem goes to the settings line (start stays
 *  disabled until it is fixed); with privacy on, asks the engine for the plan. */
export function check() {
  showFields();
  let problem = null;
  try {
    readSettings();
  } catch (e) {
    problem = e.message;
  }
  dispatch({ type: 'settings', problem });
  askPrivacyPlan(problem);
}

/** The form set to a configuration (a resumed session's). */
export function setForm(config) {
  for (const [k, v] of Object.entries(config)) {
    if (k !== 'privacy' && form().elements[k] && v !== null && v !== undefined) form().elements[k].value = v;
  }
  const eps = config.privacy ? config.privacy.epsilon : null;
  form().elements.privacy.value = eps === null ? 'off' : ['1', '4', '8'].includes(String(eps)) ? String(eps) : 'custom';
  if (eps !== null) form().elements.epsilon.value = eps;
  if (config.privacy && config.privacy.draws) form().elements.draws.value = config.privacy.draws;
  check();
}

// ---- the privacy plan ----------------------------------------------------------------------

const num = (v, digits = 3) => Number(v.toPrecision(digits)).toString();

// What a private run will do and cost, in words, from the engine's plan for the settings as
// typed and the data loaded (asked of the worker whenever either changes); hidden when off.
export function askPrivacyPlan(problem) {
  const box = $('privacy-plan');
  if (problem || form().elements.privacy.value === 'off') {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const s = store.summary;
  if (!s || current().data !== 'ready' || busy(current())) return;
  const { config } = readSettings();
  send({ type: 'privacy-plan', config, patients: s.patients.train.total, images: s.train_counts.reduce((a, b) => a + b, 0), classes: s.classes.length });
}

// What each run of the mechanism does, in words, and what the run shows while it goes.
function mechanismInWords(plan) {
  const { unit } = plan;
  const sampled = `samples each of the ${plan.patients} training ${unit}s with probability ${num(plan.sample_rate)} (${num(plan.expected_batch)} on average)`;
  const noise = `rounds the sum to a fine grid and adds discrete Gaussian noise with noise multiplier sigma ${num(plan.noise_multiplier)}`;
  if (plan.objective === 'matching') {
    return [
      `Differential privacy per ${unit}: epsilon ${num(plan.epsilon)} at delta ${plan.delta.toExponential(1)} over ${plan.iterations} releases. ` +
        `Each release draws a random embedding network, ${sampled}, takes each sampled ${unit}'s embeddings and image counts per class (each image's part of norm 1), ` +
        `clips that to norm ${num(plan.clip)}, ${noise}: the noisy class targets. ` +
        `After the last release the distillation no longer holds the ${unit}s' pixels, and the images are matched to the releases for ${plan.then} iterations, which read no ${unit} and spend nothing more. ` +
        'The page keeps the loaded files for the evaluation and the audit, which are outside the guarantee.',
      'The loss is shown only after the releases: it is then measured against the noisy targets.',
    ];
  }
  return [
    `Differential privacy per ${unit}: epsilon ${num(plan.epsilon)} at delta ${plan.delta.toExponential(1)} over ${plan.iterations} iterations. ` +
      `Each iteration ${sampled}, clips each ${unit}'s gradient to norm ${num(plan.clip)}, ${noise}.`,
    'The loss is not shown during the run: it would be the members\' loss without noise.',
  ];
}

export function showPrivacyPlan(plan, spent) {
  const box = $('privacy-plan');
  box.hidden = false;
  box.classList.remove('error');
  const [mechanism, shown] = mechanismInWords(plan);
  const lines = [
    mechanism,
    `What the noise costs: ${plan.in_words}`,
    plan.covers,
    `The archive leaves out everything from the privacy audit and the baselines trained on members: they are outside the guarantee. ${shown}`,
  ];
  if (spent !== undefined && spent !== null) lines.push(`Spent so far: epsilon ${num(spent)} of ${num(plan.epsilon)}.`);
  box.replaceChildren(...lines.map((t, i) => Object.assign(document.createElement('p'), { textContent: t, id: i === 4 ? 'privacy-spent' : '' })));
}

/** The engine's answer to `askPrivacyPlan`. */
export function privacyPlanAnswer(m) {
  const box = $('privacy-plan');
  if (m.error) {
    box.hidden = false;
    box.textContent = m.error;
    box.classList.add('error');
  } else if (m.plan) showPrivacyPlan(m.plan);
  else box.hidden = true;
}

// Every edit of a field, a choice in a list included, fires `input` (the `change` that follows a
// typed value carries the same value): one check an edit.
form().addEventListener('input', (e) => {
  if (e.target.name === 'objective') objectiveChanged();
  check();
});
