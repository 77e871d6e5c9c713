/**
 * The kinds of error that are the user's input, by class (never by name): the CLI prints such an
 * error's one line and exits 2 (1 where it is marked notInputFault); anything else is a bug and prints its
 * stack (exit 1).
 */

/**
 * Why a file could not be read, in the words every message of moco3 uses after its path: `missing`,
 * `is a folder, not a file`, or `cannot be read (CODE)`.
 */
export function readFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'missing' : code === 'EISDIR' ? 'is a folder, not a file' : `cannot be read (${code ?? String(e)})`;
}

/** An error's first line (a thrown value other than an Error, as a string): what a one-line message quotes of it. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

/** An error in what the user gave (a flag, a file, a key): one line naming it and what was expected. */
export class InputError extends Error {}

/**
 * Marks an error said in one line that is no fault of what the user typed: a run that began and failed (its
 * status says so), a download that failed (the network, the server's bytes, a full disk). The CLI says it as it says bad input and
 * exits 1, not 2 (src/cli/main.ts), so a script can tell "fix the command" from "it failed; try again".
 */
export function notInputFault<E extends Error>(e: E): E {
  return Object.assign(e, { notInputFault: true });
}

/** A full or failing disk: no fault of the path given (exit 1, as the same failure of a download or a run). */
export const DISK_FAULTS: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EIO']);

export function isNotInputFault(e: unknown): boolean {
  return (e as { notInputFault?: unknown } | null)?.notInputFault === true;
}

/**
 * An input error in what every run of an invocation shares (flags, config, data, backend): a sweep stops
 * on it, before or instead of recording one run as failed.
 */
export class SetupError extends InputError {}

/** A bad command-line flag or an impossible request. */
export class UsageError extends SetupError {
  override name = 'UsageError';
}
