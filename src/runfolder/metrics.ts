/**
 * metrics.jsonl: one JSON object per logged step. Non-finite numbers are stored as the strings "NaN",
 * "Infinity", "-Infinity"; a torn last line (a killed writer) is skipped when read and dropped on resume.
 */
import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { readFailure } from '../config/errors.ts';
import { withPath, writeFileAtomic } from '../engine/files.ts';
import { isObj, RunFolderError, runPath } from './paths.ts';

export type MetricRow = Record<string, number | null>;

export function metricsPath(runDir: string): string {
  return runPath(runDir, 'metrics');
}

/** JSON with non-finite numbers as the strings "NaN", "Infinity", "-Infinity" (plain JSON would write null): a divergence stays told apart from "not measured". */
export const jsonLine = (v: unknown): string => JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x));

export function appendMetric(runDir: string, row: MetricRow): void {
  const path = metricsPath(runDir);
  withPath(path, () => appendFileSync(path, `${jsonLine(row)}\n`));
}

/**
 * The rows written so far made durable, before a checkpoint of their step is written (its files are): a
 * machine that goes down must not keep a checkpoint and lose the rows before it.
 */
export function syncMetrics(runDir: string): void {
  const path = metricsPath(runDir);
  if (!existsSync(path)) return;
  withPath(path, () => {
    const fd = openSync(path, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
}

/** An empty metrics file (a run that starts from step 0). */
export function resetMetrics(runDir: string): void {
  writeFileAtomic(metricsPath(runDir), '');
}

/**
 * The rows of a metrics file's text. A torn last line (a killed writer) is skipped and told to `onTorn`;
 * a damaged line before it is a RunFolderError naming `label` and the line.
 */
export function parseMetrics(text: string, label = 'metrics.jsonl', onTorn?: (note: string) => void): MetricRow[] {
  const rows: MetricRow[] = [];
  const lines = text.split('\n');
  const last = lines.length - 1 - [...lines].reverse().findIndex((l) => l.trim() !== '');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      obj = undefined;
    }
    if (!isObj(obj)) {
      if (i === last && obj === undefined) {
        onTorn?.(`${label}: its last line is torn (a run killed while writing it); ignored`);
        return;
      }
      throw new RunFolderError(`${label}: line ${i + 1} is not a JSON object; remove the line, or train the run again with \`moco3 train --force\``);
    }
    const row: MetricRow = {};
    for (const [k, v] of Object.entries(obj)) {
      if (typeof v === 'number' || v === null) row[k] = v;
      else if (typeof v === 'string') row[k] = Number(v);
    }
    // one row per logged step, in order: a row of a step again (a file edited or joined by hand) would be
    // read as a second point of that step, a dip or a spike that never happened
    const prev = rows.length ? rows[rows.length - 1]!.step! : -1;
    if (typeof row.step !== 'number' || !Number.isInteger(row.step) || row.step <= prev) {
      const what = typeof row.step !== 'number' || !Number.isInteger(row.step) ? `has no step (a whole number), got ${JSON.stringify(obj.step)}` : `is of step ${row.step}, after a row of step ${prev}`;
      throw new RunFolderError(`${label}: line ${i + 1} ${what}: a run's rows are one per step, in order; remove the line, or train the run again with \`moco3 train --force\``);
    }
    rows.push(row);
  });
  return rows;
}

/**
 * The rows of a metrics file (a path), [] when there is none; see parseMetrics. A shipped run folder
 * (docs/results/) keeps its metrics gzipped: `<path>.gz` is read when the plain file is absent.
 */
export function readMetrics(path: string, onTorn?: (note: string) => void): MetricRow[] {
  if (existsSync(path)) return parseMetrics(readText(path).toString('utf8'), path, onTorn);
  if (existsSync(`${path}.gz`)) return parseMetrics(gunzipMetrics(`${path}.gz`), `${path}.gz`, onTorn);
  return [];
}

/** A metrics file's bytes; one that cannot be read (a folder in its place, no permission) is said in one line naming it. */
function readText(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new RunFolderError(`${path}: ${readFailure(e)}`);
  }
}

/** The text of a gzipped metrics file. */
function gunzipMetrics(gz: string): string {
  const bytes = readText(gz);
  try {
    return gunzipSync(bytes).toString('utf8');
  } catch (e) {
    if (!String((e as NodeJS.ErrnoException).code).startsWith('Z_')) throw e;
    throw new RunFolderError(`${gz}: not a whole gzip file (${(e as Error).message}); copy it again from where it came`);
  }
}

/**
 * Keep the rows of steps <= step (resume from a checkpoint at `step`); returns them. A torn last line (a killed writer)
 * goes, told to `onTorn`; a damaged line before it is a RunFolderError, as when the file is read (parseMetrics): a resume
 * never drops a row silently.
 */
export function truncateMetrics(runDir: string, step: number, onTorn?: (note: string) => void): MetricRow[] {
  const path = metricsPath(runDir);
  // a run folder whose metrics were gzipped (as the shipped ones are): its rows unpacked into the plain file
  // first (the .gz stays), which the resume then cuts and appends to; otherwise its earlier rows were left
  // behind in the .gz, which no reader reads beside a plain file
  if (!existsSync(path) && existsSync(`${path}.gz`)) writeFileAtomic(path, gunzipMetrics(`${path}.gz`));
  if (!existsSync(path)) return [];
  const text = readText(path).toString('utf8');
  const rows = parseMetrics(text, path, onTorn && ((note) => onTorn(note.replace(/; ignored$/, '; dropped'))));
  const keep = text.split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      const row = JSON.parse(line) as unknown;
      return isObj(row) && (row as { step: number }).step <= step;
    } catch {
      return false; // the torn last line
    }
  });
  writeFileAtomic(path, keep.length ? `${keep.join('\n')}\n` : '');
  return rows.filter((r) => Number(r.step) <= step);
}
