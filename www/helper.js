// A helper Web Worker of the engine's worker (worker.js): its own instance of the engine's wasm
// module with a session's settings and training split, computing the meta-gradients of the
// networks it is handed (CPU backends only). Every message has an `id`, echoed in the reply:
// `hello` → `hello` (loaded); `init` {module, backend, config, split} → `ready`; `gradient`
// {images, labels, rawLrs, init, batch} → `gradient` {gradient}; a failure → `error` {message}.
// A private iteration (src/web/workers/private.rs): `share` {images, labels, rawLrs, inits} →
// `shared`; then per chunk `norms` {batch, bounds} → `norms` {norms} and `weights` {w} →
// `weighted`; last `private-gradients` {noise, scale, step} → `parts` {parts}.
import init, { Helper } from '../pkg/anondistill.js';

let helper = null;
const post = (msg, transfer) => self.postMessage(msg, transfer || []);

const handlers = {
  hello: () => ({ type: 'hello' }),
  async init({ module, backend, config, split: s }) {
    await init({ module_or_path: module });
    if (helper) helper.free();
    helper = null;
    helper = new Helper(backend, config, s.size, s.pixels, s.labels, s.patients, s.classes, s.mean, s.std);
    return { type: 'ready' };
  },
  async gradient(m) {
    const g = await helper.gradient(m.images, m.labels, m.rawLrs, m.init, m.batch);
    return [{ type: 'gradient', gradient: g }, [g.images.buffer, g.labels.buffer, g.rawLrs.buffer]];
  },
  share(m) {
    helper.beginShare(m.images, m.labels, m.rawLrs, m.inits);
    return { type: 'shared' };
  },
  async norms(m) {
    const n = await helper.norms(m.batch, m.bounds);
    return [{ type: 'norms', norms: n }, [...n.sq.map((x) => x.buffer), n.loss.buffer]];
  },
  weights(m) {
    helper.weights(m.w);
    return { type: 'weighted' };
  },
  async 'private-gradients'(m) {
    const parts = await helper.privateGradients(m.noise, m.scale, m.step);
    return [{ type: 'parts', parts }, parts.flatMap((g) => [g.images.buffer, g.labels.buffer, g.rawLrs.buffer])];
  },
};

self.onmessage = async ({ data: m }) => {
  try {
    const out = await handlers[m.type](m);
    const [reply, transfer] = Array.isArray(out) ? out : [out];
    post({ ...reply, id: m.id }, transfer);
  } catch (e) {
    post({ type: 'error', id: m.id, message: e && e.message ? e.message : String(e) });
  }
};
