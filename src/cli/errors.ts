/** The CLI's error boundary: which errors are the user's input (one line, exit code 2). */
import { InputError } from '../config/errors.ts';

export function isInputError(e: unknown): e is Error {
  return e instanceof InputError;
}
