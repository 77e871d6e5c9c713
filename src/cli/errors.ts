/** Errors that are the user's input: one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const INPUT_ERRORS = new Set(['UsageError', 'ConfigError', 'DataError', 'BackendError', 'CheckpointError', 'SafetensorsError', 'SweepError']);

export function isInputError(e: unknown): e is Error {
  return e instanceof Error && INPUT_ERRORS.has(e.name);
}
