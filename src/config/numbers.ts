/**
 * Numbers typed by a user (flags, sweep launcher flags, environment variables), read strictly: decimal
 * digits only, no '', no hex, no Infinity. The flags' messages are src/cli/numbers.ts's.
 */

/** a plain decimal, optionally with an exponent: 3, 0.5, .5, 1e-4, 2.5E3 */
const DECIMAL = /^[+]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
const INTEGER = /^[+]?\d+$/;

/** A plain decimal (3, 0.5, 1e-4; spaces around allowed), else NaN. */
export const parseDecimal = (v: string): number => (DECIMAL.test(v.trim()) ? Number(v.trim()) : NaN);

/** A non-negative integer in decimal digits (`+` allowed, spaces around), else NaN: no `1e3`, no `0x10`. */
export const parseInteger = (v: string): number => (INTEGER.test(v.trim()) ? Number(v.trim()) : NaN);

/**
 * ' (written in digits)' for a count given with an exponent or a point (`1e3`, `2.0`) that, as a number, `ok`
 * would take (digits are what a count is read in); '' otherwise: the line's own expectation says the rest.
 */
export function digitsHint(v: string, ok: (x: number) => boolean): string {
  const x = parseDecimal(v);
  return Number.isNaN(parseInteger(v)) && Number.isSafeInteger(x) && ok(x) ? ' (written in digits)' : '';
}
