/** What a piece of code renames files onto: how a test sees that a file is written whole under another name first. */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/** Runs `f` and returns the destination of every fs.renameSync it made, relative to `root`, in order. */
export function renamesOnto(root: string, f: () => void): string[] {
  const onto: string[] = [];
  const rename = fs.renameSync;
  fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    onto.push(String(to).slice(root.length + 1));
    rename(from, to);
  }) as typeof fs.renameSync;
  syncBuiltinESMExports();
  try {
    f();
  } finally {
    fs.renameSync = rename;
    syncBuiltinESMExports();
  }
  return onto;
}
