/**
 * Temporary folders for a test file, removed when its process exits (`node --test` runs each test file in
 * a process of its own), whether its tests passed or failed. MOCO3_KEEP_TEST_TMP=1 keeps them, to look at
 * what a failing test left.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

/** A new empty folder under the system's temporary folder, named `prefix` and six random characters. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.length === 0 && process.env.MOCO3_KEEP_TEST_TMP !== '1') {
    process.on('exit', () => {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    });
  }
  made.push(dir);
  return dir;
}
