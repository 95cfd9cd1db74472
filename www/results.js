// The evaluation and audit panels, and the download: what the engine measured of the distilled
// set, shown here; the archive made by the engine.
import { $, store, send, dispatch } from './page.js';
import { greyCanvas, cell } from './draw.js';
import { pct1 } from './format.js';
import { saveBlob } from './run.js';

$('evaluate').addEventListener('click', () => {
  if (dispatch({ type: 'evaluate' })) send({ type: 'evaluate', audit: true });
});
$('audit').addEventListener('click', () => {
  if (dispatch({ type: 'audit' })) send({ type: 'audit' });
});
$('download').addEventListener('click', () => {
  if (dispatch({ type: 'download' })) send({ type: 'export' });
});

export function archive(m) {
  saveBlob(new Blob([m.bytes], { type: 'application/zip' }), 'result.zip');
}

/** The engine's evaluation: the table, the classes, the warnings; returns the status text. */
export function evaluation(m) {
  const e = m.evaluation;
  const pct = (a) => `${(100 * a.mean).toFixed(1)}% ± ${(100 * a.std).toFixed(1)}`;
  // A matching set and its subset are trained by the same recipe (an ordinary loop); an unrolled
  // set by its replay, the subset at the learning rate the engine picked for it.
  const rows = store.objective === 'matching'
    ? [['distilled set (trained by its recipe)', e.distilled], [`random real subset of the same size (the same recipe, lr ${e.random_subset_lr})`, e.random_subset]]
    : [['distilled set (learned labels and learning rates)', e.distilled], [`random real subset of the same size (lr ${e.random_subset_lr})`, e.random_subset]];
  if (e.full_data) rows.push(['all training data', e.full_data]);
  // With imbalanced classes balanced accuracy is the headline (in bold).
  $('eval-table').classList.toggle('imbalanced', e.imbalanced);
  $('eval-table').tBodies[0].replaceChildren(...rows.map(([name, a]) => {
    const tr = document.createElement('tr');
    for (const t of [name, pct(a.balanced_accuracy), pct(a.accuracy), a.auc == null ? 'n/a' : a.auc.toFixed(3), String(a.nets)]) tr.append(cell(t));
    return tr;
  }));
  $('eval-table').hidden = false;
  showClasses(e);
  store.evaluated = true;
  const caveat = e.too_few ? `; ${e.too_few}` : '';
  dispatch({
    type: 'evaluation',
    audit: m.audit,
    text: `on ${e.test_images} held-out patches (${e.test_counts.join(' / ')} by class; ± is the sample std over the networks)` +
      (e.imbalanced ? '; the classes are imbalanced: read balanced accuracy, the mean of the classes\' recalls' : '') + caveat,
  });
}

/** The engine's audit. */
export function audit(m) {
  showAudit(m);
  store.audit = m.report;
  dispatch({
    type: 'audited',
    text: `audit of iteration ${store.checkpoint ? store.checkpoint.iterations : '?'}; ` +
      (store.privacy ? 'it stays out of the download: it uses the holdout patients and is outside the privacy guarantee' : 'it goes into the download'),
  });
}

function showAudit(m) {
  const a = m.report;
  const iv = (x, d = 3) => `${x.value.toFixed(d)} [${x.lo.toFixed(d)}, ${x.hi.toFixed(d)}]`;
  const leak = a.reasons.length > 0;
  $('audit-verdict').textContent = `Verdict: ${a.verdict}.`;
  // Green only for "no evidence at this sample size"; "too few images to judge" stays plain.
  $('audit-verdict').className = leak ? 'error' : a.verdict.startsWith('no evidence') ? 'ok' : '';
  $('audit-reasons').replaceChildren(...a.reasons.map((r) => Object.assign(document.createElement('li'), { textContent: r })));
  const sum = (v) => v.reduce((x, y) => x + y, 0);
  const sh = a.share;
  $('audit-summary').textContent = `${sum(a.members)} members, ${sum(a.holdout)} holdout patches (never distilled from). ` +
    `${sh.closer_to_member} of ${sh.images} distilled images are nearer a member than a holdout patch; counting each nearest patch once, ` +
    `${sh.distinct_nearest_members} of ${sh.distinct_nearest} (95% interval ${sh.distinct_share.lo.toFixed(2)}–${sh.distinct_share.hi.toFixed(2)}; one half when nothing leaks). ` +
    `Near copies: ${a.near_copy.flagged.length} (L2 ≤ ${a.near_copy.l2_threshold.toFixed(2)} or SSIM ≥ ${a.near_copy.ssim_threshold.toFixed(3)}, ` +
    `the ${100 * a.near_copy.quantile}% quantile of members' distances to their nearest other member). ` +
    `Labels whose largest entry is another class: ${a.labels_not_own_class.length}.`;
  const mem = a.membership;
  $('audit-attack').tBodies[0].replaceChildren(...[['the distilled set', mem.distilled], [`a random real subset of the same size (lr ${mem.random_subset_lr})`, mem.random_subset]]
    .map(([name, x]) => {
      const tr = document.createElement('tr');
      tr.append(cell(name), cell(iv(x.auc)), cell(iv(x.tpr_at_1pct_fpr)), cell(iv(x.tpr_at_0_1pct_fpr)));
      return tr;
    }));
  $('audit-comparison').textContent = `${mem.comparison} (mean loss over ${mem.nets} networks; ${mem.members} members vs ${mem.holdout} holdout patches).`;
  $('audit-gallery').tBodies[0].replaceChildren(...a.images.map((im, i) => {
    const g = m.gallery[i];
    const tr = document.createElement('tr');
    if (im.near_copy) tr.className = 'flagged';
    const label = `${im.label_top_class}, entropy ${im.label_entropy_bits == null ? '–' : im.label_entropy_bits.toFixed(2)} bits` +
      (im.label_not_own_class ? ` (initialised as ${im.class})` : '');
    tr.append(
      cell(greyCanvas(g.distilled, m.size, true), `#${i}${im.near_copy ? ' NEAR COPY' : ''}`),
      cell(greyCanvas(g.memberL2, m.size), `L2 ${im.member_l2.toFixed(2)}`),
      cell(greyCanvas(g.memberSsim, m.size), `SSIM ${im.member_ssim.toFixed(3)}`),
      cell(greyCanvas(g.holdoutL2, m.size), `L2 ${im.holdout_l2.toFixed(2)}`),
      cell(greyCanvas(g.holdoutSsim, m.size), `SSIM ${im.holdout_ssim.toFixed(3)}`),
      cell(label),
    );
    return tr;
  }));
  $('audit-panel').hidden = false;
}
function showClasses(e) {
  const d = e.distilled;
  const pct = (a, none) => (a == null ? none : `${pct1(a.mean)}%`);
  const lines = e.classes.map((c, k) => `${c}: recall ${pct(d.per_class_recall[k], 'none (no test image)')}, precision ${pct(d.per_class_precision[k], 'never predicted')}`);
  if (d.specificity) lines.push(`specificity (${e.classes[1]} as the positive finding): ${pct(d.specificity, '')}`);
  $('eval-classes').textContent = `The distilled program, class by class: ${lines.join('; ')}.`;
  const table = $('confusion');
  const head = document.createElement('tr');
  head.append(document.createElement('th'), ...e.classes.map((c) => Object.assign(document.createElement('th'), { textContent: `predicted ${c}` })));
  const rows = d.confusion.map((row, k) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('th'), { textContent: `true ${e.classes[k]}` }));
    for (const v of row) {
      const td = document.createElement('td');
      td.textContent = `${(100 * v).toFixed(0)}%`;
      td.style.background = `rgba(37, 99, 235, ${v.toFixed(3)})`;
      td.style.color = v > 0.55 ? 'white' : 'black';
      tr.append(td);
    }
    return tr;
  });
  table.replaceChildren(head, ...rows);
  table.hidden = false;
  $('eval-warnings').replaceChildren(...e.warnings.map((w) => Object.assign(document.createElement('li'), { textContent: `The distilled program: ${w}.` })));
}
