/** The plan as text: a header (sweep, preset scaling, model and data) and one row per run with its status. */
import { PRESETS } from '../config/presets.ts';
import { fmtExp } from '../runfolder/names.ts';
import { fmtValue, runLr, type PlannedRun, type SweepPlan } from './plan.ts';
import { formatFactor } from '../config/scale.ts';
import type { RunStateInfo } from '../runfolder/state.ts';

const COLUMN_NAMES: Record<string, string> = {
  'optim.batch_size': 'batch',
  'optim.base_lr': 'base lr',
  'optim.name': 'optim',
  'optim.weight_decay': 'wd',
  'model.patch_proj': 'patch proj',
  'moco.temperature': 'temp',
  'optim.epochs': 'epochs',
  'optim.warmup_epochs': 'warmup',
  seed: 'seed',
};


/** "1024 -> 32" where the preset scaled the sweep file's value, else the value. */
function cell(r: PlannedRun, key: string): string {
  const run = key in r.values ? r.values[key] : key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], r.config);
  const paper = r.paper[key];
  if (paper !== undefined && JSON.stringify(paper) !== JSON.stringify(run)) return `${fmtValue(paper, key)} -> ${fmtValue(run, key)}`;
  return fmtValue(run, key);
}

/** What the next sweep does with a run it trains again: resume at its checkpoint, restart, or stop on a damaged one. */
const then = (s: RunStateInfo): string =>
  s.resume_error ? ', its checkpoint damaged (moco3 sweep stops on it and says how to resume it)' : s.checkpoint_step !== null ? `, resumes at ${s.checkpoint_step}` : ', restarts';

export function describeState(s: RunStateInfo): string {
  const at = s.step !== null && s.total_steps !== null ? ` at step ${s.step}/${s.total_steps}` : '';
  switch (s.state) {
    case 'new':
      return 'new';
    case 'completed':
      return 'completed';
    case 'diverged':
      return `diverged${s.step !== null ? ` at step ${s.step}` : ''}`;
    case 'interrupted':
      return `interrupted${at}${then(s)}`;
    case 'failed': {
      // the sweep trains a failed run again as an interrupted one: what it does with it, after why it failed
      const err = (s.error ?? '').split('\n')[0]!;
      return `failed${at}${err ? ` (${err.length > 60 ? `${err.slice(0, 57)}...` : err})` : ''}${then(s)}`;
    }
    case 'running':
      return `running (pid ${s.lock?.pid ?? '?'}${s.lock?.host ? ` on ${s.lock.host}` : ''})`;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function planHeader(plan: SweepPlan): string {
  const c = plan.runs[0]!.config;
  const lines = [`sweep ${plan.id}: ${plan.spec.description ?? plan.spec.name} (${plan.spec.file})`];
  if (plan.preset) {
    const s = plan.scale;
    const scaled = s.batch !== 1 || s.epochs !== 1 || s.warmup !== 1 || s.lr !== 1;
    lines.push(
      `preset ${plan.preset}: ${PRESETS[plan.preset].about}` +
        (scaled ? `; batch sizes x${formatFactor(s.batch)}, epochs x${formatFactor(s.epochs)}${s.warmup !== s.epochs ? `, warmup epochs x${formatFactor(s.warmup)}` : ''} and base lr x${formatFactor(s.lr)} of the sweep file's (paper's) values` : '; the sweep file\'s values unscaled'),
    );
  } else {
    lines.push('no preset: the config defaults (ViT-B/16 recipe) and the sweep file\'s values unscaled');
  }
  const m = c.model;
  lines.push(
    `model ${m.arch} (dim ${m.dim}, depth ${m.depth}, heads ${m.heads}, patch ${m.patch_size}), data ${c.data.name} ${c.data.image_size} px` +
      `${c.data.train_size !== null ? `, ${c.data.train_size} train images` : ''}; lr = base_lr x batch / 256`,
  );
  if (plan.sets.length) lines.push(`--set ${plan.sets.join(' --set ')}`);
  return lines.join('\n');
}

/** `extra`: another column before the status (the Slurm task of each run). */
export function formatPlan(plan: SweepPlan, states: RunStateInfo[], extra?: { name: string; cells: string[] }): string {
  const shown = ['optim.batch_size', 'optim.base_lr', 'optim.name', 'optim.weight_decay', 'model.patch_proj'];
  for (const k of plan.varied) if (!shown.includes(k) && k !== 'seed') shown.push(k);
  // the schedule as run: epochs and warmup, each scaled by its own factor
  for (const k of ['seed', 'optim.epochs', 'optim.warmup_epochs']) if (!shown.includes(k)) shown.push(k);
  const head = ['#', 'run', ...shown.flatMap((k) => (k === 'optim.base_lr' ? [COLUMN_NAMES[k]!, 'lr'] : [COLUMN_NAMES[k] ?? k])), ...(extra ? [extra.name] : []), 'status'];
  const rows = plan.runs.map((r, i) => [
    String(r.index),
    r.id,
    ...shown.flatMap((k) => (k === 'optim.base_lr' ? [cell(r, k), fmtExp(Number(runLr(r.config).toPrecision(4)))] : [cell(r, k)])),
    ...(extra ? [extra.cells[i]!] : []),
    describeState(states[i]!),
  ]);
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
  const summary = [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
  return `${planHeader(plan)}\nresults: ${plan.dir} (${plan.runs.length} run${plan.runs.length === 1 ? '' : 's'}: ${summary})\n\n${table([head, ...rows])}\n`;
}
