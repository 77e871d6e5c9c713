/**
 * metrics.jsonl: one JSON object per logged step. Non-finite numbers are stored as the strings "NaN",
 * "Infinity", "-Infinity"; a torn last line (a killed writer) is skipped when read and dropped on resume.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { writeFileAtomic } from '../engine/files.ts';
import { isObj, runPath } from './paths.ts';

export type MetricRow = Record<string, number | null>;

export function metricsPath(runDir: string): string {
  return runPath(runDir, 'metrics');
}

export function appendMetric(runDir: string, row: MetricRow): void {
  appendFileSync(metricsPath(runDir), `${JSON.stringify(row, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}\n`);
}

/** An empty metrics file (a run that starts from step 0). */
export function resetMetrics(runDir: string): void {
  writeFileAtomic(metricsPath(runDir), '');
}

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

/**
 * The rows of a metrics file (a path), [] when there is none. A shipped run folder (docs/results/) keeps
 * its metrics gzipped: `<path>.gz` is read when the plain file is absent.
 */
export function readMetrics(path: string): MetricRow[] {
  if (existsSync(path)) return parseMetrics(readFileSync(path, 'utf8'));
  if (existsSync(`${path}.gz`)) return parseMetrics(gunzipSync(readFileSync(`${path}.gz`)).toString('utf8'));
  return [];
}

/** Keep the rows of steps <= step (resume from a checkpoint at `step`); torn lines go. */
export function truncateMetrics(runDir: string, step: number): void {
  const path = metricsPath(runDir);
  if (!existsSync(path)) return;
  const keep = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false;
      }
    });
  writeFileAtomic(path, keep.length ? `${keep.join('\n')}\n` : '');
}
