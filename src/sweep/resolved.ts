/**
 * `results/<sweep>/sweep.yaml`: the sweep as resolved, every run's full config. `runs` is the latest
 * invocation's plan; `earlier_runs` keeps what earlier invocations planned that this one does not (other
 * seeds, another `--set`), so the report's "Missing" line and its paper values cover the whole folder.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { withFileLock, writeFileAtomic } from '../engine/files.ts';
import { isObj, type Obj } from '../runfolder/paths.ts';
import { formatFactor } from '../config/scale.ts';
import { runLr, type SweepPlan } from './plan.ts';

/** The runs an earlier sweep.yaml planned (its `runs` and `earlier_runs`) that `ids` does not, by id, once each, with the preset each was planned under. */
export function earlierRuns(previous: unknown, ids: Set<string>): Obj[] {
  if (!isObj(previous)) return [];
  const out = new Map<string, Obj>();
  for (const [list, latest] of [[previous.runs, true], [previous.earlier_runs, false]] as const) {
    if (!Array.isArray(list)) continue;
    for (const r of list) {
      if (!isObj(r) || typeof r.id !== 'string' || ids.has(r.id) || out.has(r.id)) continue;
      // its index numbered the plan it came from, not this one (a Slurm task's --run-index); the preset it
      // was planned under is the record's (an earlier run keeps its own)
      const { index: _index, ...rest } = r;
      out.set(r.id, latest ? { preset: typeof previous.preset === 'string' ? previous.preset : null, ...rest } : rest);
    }
  }
  return [...out.values()];
}

export function resolvedSweep(plan: SweepPlan, earlier: Obj[] = []): Record<string, unknown> {
  return {
    name: plan.spec.name,
    id: plan.id,
    file: plan.spec.file,
    description: plan.spec.description,
    method: plan.spec.method,
    preset: plan.preset,
    scale: { batch: plan.scale.batch, batch_factor: formatFactor(plan.scale.batch), epochs: plan.scale.epochs, warmup: plan.scale.warmup, lr: plan.scale.lr, about: plan.scale.about },
    lr_rule: 'lr = optim.base_lr * optim.batch_size / 256',
    optimizers: plan.optimizers,
    seeds: plan.seeds,
    sets: plan.sets,
    varied: plan.varied,
    runs: plan.runs.map((r) => ({
      index: r.index,
      id: r.id,
      // the sweep file's (paper's) value and the value run, for every key the sweep sets
      paper: r.paper,
      values: r.values,
      lr: runLr(r.config),
      config_hash: r.hash,
      config: r.config,
    })),
    ...(earlier.length ? { earlier_runs: earlier } : {}),
  };
}

/**
 * Writes the plan's sweep.yaml; returns what to tell the user: a damaged sweep.yaml written anew, and the
 * folder's earlier runs planned under another preset (their model, data and epochs differ: the report's
 * columns would mix them). Read, merged and written under a lock (`.sweep.yaml.lock`): agents on other hosts
 * and other invocations plan into one folder at the same moment, and each keeps the others' runs listed.
 * `afterRead` lets a test put another writer between the read and the write.
 */
export function writeResolvedSweep(plan: SweepPlan, afterRead: () => void = () => {}): string[] {
  const path = join(plan.dir, 'sweep.yaml');
  return withFileLock(path, () => writeLocked(plan, path, afterRead));
}

function writeLocked(plan: SweepPlan, path: string, afterRead: () => void): string[] {
  let cur: string | null = null;
  try {
    cur = readFileSync(path, 'utf8');
  } catch {
    /* not written yet */
  }
  let previous: unknown = null;
  let damaged = false;
  try {
    previous = cur === null ? null : YAML.parse(cur);
  } catch {
    // moco3's own record, written anew from the plan (the run folders hold what ran), and said
    damaged = true;
  }
  afterRead();
  const earlier = earlierRuns(previous, new Set(plan.runs.map((r) => r.id)));
  const text =
    `# written by moco3 sweep: the sweep as resolved; each run's folder is <id>/` +
    `${earlier.length ? '\n# runs: the latest invocation\'s plan; earlier_runs: what earlier invocations planned besides' : ''}\n` +
    YAML.stringify(resolvedSweep(plan, earlier), { lineWidth: 0 });
  // unchanged: not rewritten (the tasks of a Slurm array or agents on other hosts start together)
  if (cur !== text) writeFileAtomic(path, text);
  const notes: string[] = [];
  if (damaged) notes.push(`${path} could not be read (not YAML); written anew from this plan: what earlier invocations planned is no longer listed (their run folders are kept)`);
  const mixed = presetNote(plan, earlier);
  if (mixed) notes.push(mixed);
  return notes;
}

/** The presets, other than the plan's, that earlier runs were planned under. */
function otherPresets(plan: SweepPlan, earlier: Obj[]): string[] {
  return [...new Set(earlier.map((r) => r.preset).filter((p): p is string => typeof p === 'string' && p !== plan.preset))];
}

/** The note for a folder whose earlier runs were planned under another preset, or null. */
function presetNote(plan: SweepPlan, earlier: Obj[]): string | null {
  const others = otherPresets(plan, earlier);
  if (!others.length) return null;
  return (
    `${plan.dir} was planned under preset ${others.join(', ')} as well; the runs of ${plan.preset ? `preset ${plan.preset}` : 'no preset'} go beside theirs ` +
    "and the report's columns will mix the two (it names what changes with them); give --results another folder to keep them apart"
  );
}

/**
 * What writeResolvedSweep would tell of the folder's earlier runs, reading only (`sweep --dry-run`): the note
 * for runs planned under another preset, or null (also for a sweep.yaml that cannot be read, which the sweep
 * writes anew and says so).
 */
export function plannedPresetNote(plan: SweepPlan): string | null {
  const earlier = plannedEarlier(plan);
  return earlier === null ? null : presetNote(plan, earlier);
}

/** The runs the folder's sweep.yaml planned besides the plan's, or null when it cannot be read. */
function plannedEarlier(plan: SweepPlan): Obj[] | null {
  let previous: unknown;
  try {
    previous = YAML.parse(readFileSync(join(plan.dir, 'sweep.yaml'), 'utf8'));
  } catch {
    return null;
  }
  return earlierRuns(previous, new Set(plan.runs.map((r) => r.id)));
}

/**
 * What `moco3 baselines` tells of a folder whose runs were planned under another preset (its flags name
 * another preset than the sweep's, or none): the baselines it computes are not those runs', or null.
 */
export function baselinesPresetNote(plan: SweepPlan): string | null {
  const others = otherPresets(plan, plannedEarlier(plan) ?? []);
  if (!others.length) return null;
  return (
    `${plan.dir} was planned under preset ${others.join(', ')}; these baselines are for ${plan.preset ? `preset ${plan.preset}` : 'no preset'}, ` +
    `from which the report draws no verdict on runs of other data or another model: give --preset ${others[0]} (and the sweep's --set) for its runs`
  );
}
