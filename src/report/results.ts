/**
 * Reading result folders (DESIGN.md "Files a run leaves") with no TensorFlow.js: a run's config,
 * status, summary and metrics, and a sweep's runs. Everything here tolerates a run that is still
 * being written (missing files, a torn last metrics line).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import YAML from 'yaml';
import { writeFileAtomic } from '../engine/files.ts';

export type MetricRow = Record<string, number | null>;

export interface RunStatusFile {
  status: string;
  step: number;
  total_steps?: number;
  diverged_at?: number | null;
  error?: string;
}

export interface RunRecord {
  /** folder name */
  id: string;
  dir: string;
  /** config.yaml as written (nested) */
  config: Record<string, unknown>;
  /** config flattened to dotted keys: `optim.base_lr` -> 1e-4 */
  flat: Map<string, unknown>;
  status: RunStatusFile | null;
  summary: Record<string, unknown> | null;
  metrics: MetricRow[];
}

/** A result folder that cannot be read as asked (the CLI turns it into a usage error, exit 2). */
export class ReportError extends Error {
  override name = 'ReportError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** {a: {b: 1}, c: [1, 2]} -> a.b = 1, c = [1, 2] (arrays are leaves). */
export function flatten(obj: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (isObj(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.set(prefix, obj);
  }
  return out;
}

/**
 * metrics.jsonl: one JSON object per line; non-finite numbers are stored as the strings "NaN",
 * "Infinity", "-Infinity"; a torn line (a killed writer) is skipped. Same result as train/metrics.ts
 * readMetrics, without its TensorFlow.js import.
 */
export function parseMetrics(text: string): MetricRow[] {
  const rows: MetricRow[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      continue;
    }
    if (!isObj(obj)) continue;
    const row: MetricRow = {};
    for (const [k, v] of Object.entries(obj)) {
      if (typeof v === 'number' || v === null) row[k] = v;
      else if (typeof v === 'string') row[k] = Number(v);
    }
    rows.push(row);
  }
  return rows;
}

export function readMetricsFile(path: string): MetricRow[] {
  return existsSync(path) ? parseMetrics(readFileSync(path, 'utf8')) : [];
}

function readJson(path: string): Obj | null {
  if (!existsSync(path)) return null;
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return isObj(v) ? v : null;
  } catch {
    return null;
  }
}

function readYaml(path: string): Obj | null {
  if (!existsSync(path)) return null;
  try {
    const v = YAML.parse(readFileSync(path, 'utf8')) as unknown;
    return isObj(v) ? v : null;
  } catch {
    return null;
  }
}

export function isRunDir(dir: string): boolean {
  return existsSync(join(dir, 'config.yaml'));
}

export function readRun(dir: string): RunRecord {
  const config = readYaml(join(dir, 'config.yaml'));
  if (!config) throw new ReportError(`${dir}: no readable config.yaml (not a run folder)`);
  return {
    id: basename(dir),
    dir,
    config,
    flat: flatten(config),
    status: readJson(join(dir, 'status.json')) as RunStatusFile | null,
    summary: readJson(join(dir, 'summary.json')),
    metrics: readMetricsFile(join(dir, 'metrics.jsonl')),
  };
}

export interface SweepRecord {
  name: string;
  dir: string;
  /** sweep.yaml as written by the sweep runner, when there is one */
  sweepFile: Obj | null;
  runs: RunRecord[];
}

/** A sweep folder: its sweep.yaml (optional) and every sub-folder holding a config.yaml. */
export function readSweep(dir: string): SweepRecord {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ReportError(`${dir}: no such sweep folder`);
  const runs = readdirSync(dir)
    .filter((d) => !d.startsWith('.') && d !== 'plots')
    .map((d) => join(dir, d))
    .filter((d) => statSync(d).isDirectory() && isRunDir(d))
    .sort()
    .map(readRun);
  return { name: basename(dir), dir, sweepFile: readYaml(join(dir, 'sweep.yaml')), runs };
}

/** The sweep folders under a results directory: folders holding at least one run folder. */
export function listSweeps(resultsDir: string): string[] {
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    .filter((d) => !d.startsWith('.'))
    .map((d) => join(resultsDir, d))
    .filter((d) => statSync(d).isDirectory() && readdirSync(d).some((r) => isRunDir(join(d, r))))
    .sort();
}

const toJson = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x), 2);

/** Merge keys into a run's summary.json (atomic), keeping what is there; no write when nothing changes. */
export function mergeSummary(runDir: string, values: Obj): Obj {
  const path = join(runDir, 'summary.json');
  const cur = readJson(path) ?? {};
  const next = { ...cur, ...values };
  const text = toJson(next);
  if (text !== toJson(cur)) writeFileAtomic(path, `${text}\n`);
  return JSON.parse(text) as Obj;
}
