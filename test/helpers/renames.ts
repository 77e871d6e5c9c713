/** Node's fs functions replaced for the length of a test's call: how a test makes a race or watches a write. */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

type Patchable = 'renameSync' | 'existsSync';

/** Runs `f` with fs[name] replaced by what `fake` makes of the real one, put back afterwards (ESM imports of node:fs see it too). */
export function withFs<K extends Patchable, T>(name: K, fake: (real: (typeof fs)[K]) => (typeof fs)[K], f: () => T): T {
  const fns = fs as unknown as Record<K, (typeof fs)[K]>;
  const real = fns[name];
  fns[name] = fake(real);
  syncBuiltinESMExports();
  try {
    return f();
  } finally {
    fns[name] = real;
    syncBuiltinESMExports();
  }
}

/** Runs `f` and returns the destination of every fs.renameSync it made, relative to `root`, in order. */
export function renamesOnto(root: string, f: () => void): string[] {
  const onto: string[] = [];
  withFs(
    'renameSync',
    (rename) =>
      ((from: fs.PathLike, to: fs.PathLike) => {
        onto.push(String(to).slice(root.length + 1));
        rename(from, to);
      }) as typeof fs.renameSync,
    f,
  );
  return onto;
}
