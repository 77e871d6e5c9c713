/** Versions and provenance for meta.json. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendInfo } from '../engine/backend.ts';
import { samePath } from '../runfolder/paths.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const require = createRequire(import.meta.url);

export function versionOf(pkg: string): string | null {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return null;
  }
}

/** moco3's own version (its package.json's); null outside a checkout. */
export function ownVersion(): string | null {
  try {
    return (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

export function packageVersions(): Record<string, string | null> {
  const own = ownVersion();
  return {
    moco3: own,
    '@tensorflow/tfjs-core': versionOf('@tensorflow/tfjs-core'),
    '@tensorflow/tfjs-backend-wasm': versionOf('@tensorflow/tfjs-backend-wasm'),
    '@tensorflow/tfjs-node': versionOf('@tensorflow/tfjs-node'),
    '@tensorflow/tfjs-node-gpu': versionOf('@tensorflow/tfjs-node-gpu'),
  };
}

/**
 * The commit of moco3's own checkout, and whether its tracked files differ from it; null where moco3 is no
 * checkout of its own (installed inside another project's repository, git would name that one).
 */
export function gitCommit(dir = root): { commit: string; dirty: boolean } | null {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  try {
    const [top, commit] = git('rev-parse', '--show-toplevel', 'HEAD').split('\n');
    if (!top || !commit || !samePath(top, dir)) return null;
    return { commit, dirty: git('status', '--porcelain', '--untracked-files=no') !== '' };
  } catch {
    return null;
  }
}

/** meta.json of a run: versions, machine, command, and where it started. */
export function runMeta(o: { backend: BackendInfo; command: string[]; resumedFrom: number | null; hash: string; params: number }): Record<string, unknown> {
  const git = gitCommit();
  return {
    moco3: packageVersions(),
    git_commit: git?.commit ?? null,
    // the checkout had changes of its own: the commit alone does not say what ran
    git_dirty: git?.dirty ?? null,
    backend: o.backend.name,
    device: o.backend.device,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpus().length,
    // those this process may run on (its CPU affinity: taskset, a Slurm task's cpuset)
    cpus_allowed: availableParallelism(),
    cpu_model: cpus()[0]?.model ?? null,
    host: hostname(),
    command: o.command,
    started: new Date().toISOString(),
    resumed_from_step: o.resumedFrom,
    config_hash: o.hash,
    params_trainable: o.params,
  };
}
