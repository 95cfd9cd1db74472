// What the page and the engine's worker both need to agree on.

// CPU workers: one per core, up to the 4 networks an iteration samples by default. The engine's
// worker loads MAX_DEFAULT_WORKERS - 1 helpers with the page, so the default never waits for one.
export const MAX_DEFAULT_WORKERS = 4;
export const defaultWorkers = (cores) => Math.max(1, Math.min(MAX_DEFAULT_WORKERS, cores || 1));
