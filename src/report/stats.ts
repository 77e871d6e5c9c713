/**
 * The little statistics the report needs to say whether a difference between two settings is beyond seed
 * noise: mean and sample standard deviation, and Student's t distribution for a paired t-test.
 *
 * The t distribution's tail is the regularized incomplete beta function, P(|T| > t) = I_x(df/2, 1/2) with
 * x = df / (df + t^2), evaluated by its continued fraction (modified Lentz), with log-gamma from a Lanczos
 * series. test/report/stats.test.ts checks it against the closed forms for 1 and 2 degrees of freedom and
 * the tabulated quantiles.
 */

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Sample standard deviation (n - 1); NaN for fewer than two values. */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7; about 15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const TINY = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1 and a, b > 0. */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1) || !(a > 0) || !(b > 0)) throw new RangeError(`incompleteBeta(${x}, ${a}, ${b}): expected 0 <= x <= 1, a > 0, b > 0`);
  if (x === 0 || x === 1) return x;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  // the continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(x, a, b)) / a;
  return 1 - (front * betaContinuedFraction(1 - x, b, a)) / b;
}

/** Two-sided tail of Student's t with df degrees of freedom: P(|T| >= |t|). */
export function studentTwoSidedP(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTwoSidedP: expected df > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return 0;
  return incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

export interface PairedTest {
  /** number of pairs */
  n: number;
  /** mean and sample std of the differences */
  mean: number;
  std: number;
  /** t statistic (mean / (std / sqrt(n))) and its two-sided p-value, n - 1 degrees of freedom */
  t: number;
  p: number;
  /**
   * 'sign' where the differences are all equal and not zero: the t-test has no spread to scale them by (its
   * p would be 0 on any two seeds), so p is the exact two-sided sign test's, 2 x 0.5^n
   */
  test: 't' | 'sign';
}

/**
 * Paired t-test on the differences d_i = b_i - a_i (two or more pairs). A one-sided p in the direction of
 * the mean is half the two-sided one. Differences that are all zero give t = 0 (p = 1). Differences that
 * are all equal and not zero give t = ±∞ and no t-test p (it would be 0 on two seeds): p is then the exact
 * two-sided sign test's, 2 x 0.5^n (n seeds all one way).
 */
export function pairedTTest(diffs: readonly number[]): PairedTest | null {
  const n = diffs.length;
  if (n < 2) return null;
  const m = mean(diffs);
  const s = sampleStd(diffs);
  // no spread: exactly, or float noise of differences that are the same (41.5 - 40.3 and 40.5 - 39.3)
  const flat = s <= 1e-9 * Math.max(1, Math.abs(m));
  if (flat && m !== 0) return { n, mean: m, std: 0, t: m > 0 ? Infinity : -Infinity, p: Math.min(1, 2 * 0.5 ** n), test: 'sign' };
  const t = flat ? 0 : m / (s / Math.sqrt(n));
  return { n, mean: m, std: s, t, p: studentTwoSidedP(t, n - 1), test: 't' };
}
