/** The CLI's error boundary: which errors are said in one line (exit code 2, or 1 where marked notInputFault: src/config/errors.ts). */
import { InputError } from '../config/errors.ts';

export function isInputError(e: unknown): e is Error {
  return e instanceof InputError;
}
