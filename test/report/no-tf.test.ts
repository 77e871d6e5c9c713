import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmp, writeBatchSweep } from './fixtures.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Every module specifier a TypeScript file imports (static and dynamic, type-only ones left out). */
function specifiers(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  for (const m of src.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

test('src/report imports no TensorFlow.js, directly or through other moco3 modules (static graph)', () => {
  const start = readdirSync(join(root, 'src/report')).filter((f) => f.endsWith('.ts')).map((f) => join(root, 'src/report', f));
  start.push(join(root, 'src/cli/report.ts'));
  const seen = new Set<string>();
  const packages = new Set<string>();
  const todo = [...start];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const s of specifiers(f)) {
      if (s.startsWith('.')) {
        const next = resolve(dirname(f), s);
        assert.ok(existsSync(next), `${f}: import ${s} does not exist`);
        todo.push(next);
      } else {
        packages.add(s);
      }
    }
  }
  assert.ok(seen.size >= start.length);
  const tfPackages = [...packages].filter((p) => p.startsWith('@tensorflow/'));
  assert.deepEqual(tfPackages, [], `reached from src/report: ${[...seen].map((f) => f.slice(root.length + 1)).join(', ')}`);
  assert.ok(packages.has('vega') && packages.has('vega-lite') && packages.has('csv-stringify/sync'));
});

test('writing a report in a fresh process never loads TensorFlow.js (no engine on globalThis)', () => {
  const dir = writeBatchSweep(tmp(), 'batch-size');
  const script = `
    const { writeReport } = await import(${JSON.stringify(join(root, 'src/report/index.ts'))});
    await import(${JSON.stringify(join(root, 'src/cli/report.ts'))});
    const r = await writeReport(${JSON.stringify(dir)});
    console.log(JSON.stringify({ files: r.files.length, tf: typeof globalThis._tfengine }));
  `;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  const res = JSON.parse(out.trim().split('\n').pop()!);
  assert.ok(res.files >= 7);
  assert.equal(res.tf, 'undefined', 'TensorFlow.js was loaded');
  // the check can fail: importing tfjs-core creates the engine
  const control = execFileSync(process.execPath, ['--input-type=module', '-e', "await import('@tensorflow/tfjs-core'); console.log(typeof globalThis._tfengine)"], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(control.trim(), 'object');
});
