/**
 * Numbers given as flags, read strictly: decimal digits only (no '', no hex, no `1e3` for a count), within
 * the bounds the flag can mean, or one line naming the flag and what was expected (exit 2).
 */
import { UsageError } from '../config/errors.ts';
import { digitsHint, parseDecimal, parseInteger } from '../config/numbers.ts';

/** The value as the error line shows it: an empty one as '' */
const shown = (v: string) => (v.trim() === '' ? `'${v}'` : v);

/** An integer flag from `min` to `max` (default: the largest safe integer). */
export function intFlag(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = parseInteger(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const what = max === Number.MAX_SAFE_INTEGER ? (min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer of at least ${min}`) : `an integer from ${min} to ${max}`;
    // `1e9` is an integer, but counts are written in digits: said, so the line is not read as "not an integer"
    throw new UsageError(`${flag} ${shown(v)}: expected ${what}${digitsHint(v, (x) => x >= min && x <= max)}`);
  }
  return n;
}

/** A positive number flag, at most `max` (default: any finite number). */
export function positiveFlag(flag: string, v: string, max = Number.MAX_VALUE): number {
  const x = parseDecimal(v);
  if (!Number.isFinite(x) || x <= 0 || x > max) throw new UsageError(`${flag} ${shown(v)}: expected a positive number${max === Number.MAX_VALUE ? '' : ` of at most ${max}`}`);
  return x;
}

/** A positive flag: an integer with `integer`, else any positive number. */
export const positive = (flag: string, v: string, integer = false): number => (integer ? intFlag(flag, v, 1) : positiveFlag(flag, v));
