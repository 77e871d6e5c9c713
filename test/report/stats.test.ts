/**
 * Student's t tail and the paired t-test against values that need no library: the closed forms of the t
 * distribution for 1 and 2 degrees of freedom, the tabulated 95% / 99% quantiles, Γ at integers and 1/2,
 * and a paired test worked by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { incompleteBeta, logGamma, mean, pairedTTest, sampleStd, studentTwoSidedP } from '../../src/report/stats.ts';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('log-gamma at integers and 1/2', () => {
  close(logGamma(1), 0, 1e-13, 'lnΓ(1)');
  close(logGamma(5), Math.log(24), 1e-12, 'lnΓ(5)');
  close(logGamma(11), Math.log(3628800), 1e-11, 'lnΓ(11)');
  close(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-13, 'lnΓ(1/2)');
  close(logGamma(0.25), Math.log(3.6256099082219083), 1e-12, 'lnΓ(1/4)');
});

test('incomplete beta: I_x(1, 1) = x, I_x(a, 1) = x^a, and the symmetry I_x(a, b) = 1 - I_(1-x)(b, a)', () => {
  for (const x of [0, 0.1, 0.5, 0.93, 1]) close(incompleteBeta(x, 1, 1), x, 1e-13, `I_${x}(1,1)`);
  for (const x of [0.2, 0.7]) close(incompleteBeta(x, 3.5, 1), x ** 3.5, 1e-13, `I_${x}(3.5,1)`);
  close(incompleteBeta(0.3, 2.5, 0.5) + incompleteBeta(0.7, 0.5, 2.5), 1, 1e-13, 'symmetry');
  assert.throws(() => incompleteBeta(1.5, 1, 1), /expected 0 <= x <= 1/);
});

test("Student's t, two-sided tail: closed forms for 1 and 2 degrees of freedom", () => {
  for (const t of [0, 0.3, 1, 2.5, 12.706, 40]) {
    close(studentTwoSidedP(t, 1), 1 - (2 / Math.PI) * Math.atan(t), 1e-12, `df 1, t ${t}`);
    close(studentTwoSidedP(-t, 2), 1 - t / Math.sqrt(2 + t * t), 1e-12, `df 2, t ${-t}`);
  }
});

test("Student's t, two-sided tail: tabulated quantiles", () => {
  // t_{0.975} and t_{0.995} from the standard tables
  const table: Array<[number, number, number]> = [
    [2.776445, 4, 0.05], [2.570582, 5, 0.05], [2.228139, 10, 0.05], [2.085963, 20, 0.05], [1.983972, 100, 0.05],
    [4.604095, 4, 0.01], [3.169273, 10, 0.01],
  ];
  for (const [t, df, p] of table) close(studentTwoSidedP(t, df), p, 1e-6, `df ${df}, t ${t}`);
  // many degrees of freedom: the normal's 1.959964
  close(studentTwoSidedP(1.959964, 1e7), 0.05, 1e-5, 'normal limit');
  assert.equal(studentTwoSidedP(Infinity, 3), 0);
});

test('paired t-test worked by hand', () => {
  assert.equal(mean([1, 2, 3]), 2);
  assert.equal(sampleStd([1, 2, 3]), 1);
  // d = 1, 2, 3: mean 2, std 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3, df 2: p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(12/14)
  const r = pairedTTest([1, 2, 3])!;
  assert.equal(r.n, 3);
  close(r.t, 2 * Math.sqrt(3), 1e-12, 't');
  close(r.p, 1 - Math.sqrt(12 / 14), 1e-12, 'p');
  // the sign follows the mean; the two-sided p does not
  const s = pairedTTest([-1, -2, -3])!;
  close(s.t, -2 * Math.sqrt(3), 1e-12, 't negative');
  close(s.p, r.p, 1e-15, 'p negative');
  assert.equal(r.test, 't');
  // all differences equal and not 0: no spread to scale them by, t infinite, and the p of the exact sign
  // test, 2 x 0.5^n (two seeds one way: 0.5; five: 0.0625), not the t-test's 0
  const two = pairedTTest([0.5, 0.5])!;
  assert.deepEqual([two.t, two.p, two.test], [Infinity, 0.5, 'sign']);
  const five = pairedTTest([-1, -1, -1, -1, -1])!;
  assert.deepEqual([five.t, five.p, five.test], [-Infinity, 0.0625, 'sign']);
  // differences equal up to float noise (41.5 - 40.3, 40.5 - 39.3, 42.9 - 41.7) have no spread either
  const noisy = pairedTTest([41.5 - 40.3, 40.5 - 39.3, 42.9 - 41.7])!;
  assert.deepEqual([noisy.std, noisy.p, noisy.test], [0, 0.25, 'sign']);
  // all 0: t 0, p 1
  const zero = pairedTTest([0, 0, 0])!;
  assert.deepEqual([zero.t, zero.p, zero.test], [0, 1, 't']);
  assert.equal(pairedTTest([1]), null);
});
