// Numbers as the page writes them (pure functions: tests/e2e/machine.test.mjs runs them in Node).

/** Seconds as "3 min 5 s" or "42.0 s"; a minute is never "60 s". */
export function fmt(sec) {
  if (!isFinite(sec)) return '–';
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const whole = Math.round(sec);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

/** A share as a percentage with one decimal, as the engine writes it (Rust's `{:.1}` of 100·x),
 *  so that the class line and the engine's warnings agree. Both round the exact binary value;
 *  on an exact tie (80.25) Rust picks the even digit and `toFixed` the larger: 0.8025 read 80.2
 *  in a warning and 80.3 on the class line. */
export function pct1(x) {
  const v = 100 * x;
  // A double halfway between two tenths ends in .25 or .75 (the only such binary fractions):
  // v * 4, exact, is then odd.
  if (Number.isInteger(v * 4) && (v * 4) % 2 !== 0) {
    const lo = Math.floor(v * 10);
    return ((lo % 2 === 0 ? lo : lo + 1) / 10).toFixed(1);
  }
  return v.toFixed(1);
}
