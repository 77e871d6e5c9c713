/** Checkpoint files as moco3 writes them, for tests that make one it could have written (not a damaged one). */
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeJsonAtomic, sha256OfFile } from '../../src/engine/files.ts';
import { writeSafetensors, type StTensor } from '../../src/engine/safetensors.ts';

/**
 * Writes a checkpoint's tensor file and records its size and SHA-256 in the folder's state.json, as a save does:
 * weights moco3 itself wrote (gone to NaN in an update, the divergence found at the next step), or a checkpoint
 * folder copied whole from another run. A file rewritten without this is one damaged after it was written.
 */
export function writeCheckpointFile(path: string, tensors: Map<string, StTensor>, metadata: Record<string, string>): void {
  writeSafetensors(path, tensors, metadata);
  recordDigest(path);
}

/** A checkpoint's tensor file's size and SHA-256 recorded in its folder's state.json as they are now (as a save records them). */
export function recordDigest(path: string): void {
  const statePath = join(dirname(path), 'state.json');
  const state = JSON.parse(readFileSync(statePath, 'utf8'));
  writeJsonAtomic(statePath, { ...state, files: { ...state.files, [basename(path)]: sha256OfFile(path) } });
}
