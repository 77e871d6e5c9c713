/**
 * What must be released before the process can end (Dawn's GPU device keeps Node's event loop alive). No
 * TensorFlow import here: the CLI calls `runShutdown()` after every command, including those that never
 * load TensorFlow.
 */
const hooks = new Set<() => void>();

export function onShutdown(f: () => void): void {
  hooks.add(f);
}

export function runShutdown(): void {
  for (const f of [...hooks]) {
    hooks.delete(f);
    try {
      f();
    } catch {
      /* the process ends anyway */
    }
  }
}
