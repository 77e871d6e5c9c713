/**
 * The layers of docs/ARCHITECTURE.md hold: every relative import in src/ goes to the same folder or to a
 * folder that the table lets it import, the table only points downward, and no files import each other
 * in a circle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = join(root, 'src');

interface Layer {
  layer: number;
  mayImport: Set<string>;
}

/** The table rows `| 3 | train | eval, components, ... |` of docs/ARCHITECTURE.md. */
function readTable(): Map<string, Layer> {
  const doc = readFileSync(join(root, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const table = new Map<string, Layer>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*(\d+)\s*\|\s*([a-z]+)\s*\|([^|]*)\|\s*$/.exec(line);
    if (!m) continue;
    const mayImport = new Set(m[3]!.split(',').map((s) => s.trim()).filter(Boolean));
    table.set(m[2]!, { layer: Number(m[1]), mayImport });
  }
  return table;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Relative imports of a file (static, dynamic, re-exports, side-effect imports), as absolute paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)'(\.[^']+)'/gm)) out.push(resolve(dirname(file), m[1]!));
  return out;
}

const folderOf = (file: string) => relative(src, file).split('/')[0]!;

const table = readTable();
const files = sourceFiles(src);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('docs/ARCHITECTURE.md: every folder of src/ has a row, and a folder may import only lower layers', () => {
  const folders = new Set(files.map(folderOf).filter((f) => !f.endsWith('.ts')));
  assert.ok(table.size >= 9, `the layer table was not found (${table.size} rows)`);
  assert.deepEqual([...folders].filter((f) => !table.has(f)), [], 'folders of src/ missing from the table');
  for (const [folder, { layer, mayImport }] of table) {
    for (const dep of mayImport) {
      const d = table.get(dep);
      assert.ok(d, `${folder} may import '${dep}', which has no row`);
      assert.ok(d.layer > layer, `${folder} (layer ${layer}) may import ${dep} (layer ${d.layer}): the table points upward`);
    }
  }
});

/** Imports that leave their folder for one the table does not let it import. */
function upwardImports(g: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [file, deps] of g) {
    const from = folderOf(file);
    for (const dep of deps) {
      const to = folderOf(dep);
      if (to === from || table.get(from)?.mayImport.has(to)) continue;
      bad.push(`${relative(root, file)} imports ${relative(root, dep)} (${from} -> ${to})`);
    }
  }
  return bad;
}

/** Every circle a depth-first walk meets, as `a -> b -> a`. */
function findCycles(g: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(src, p)).join(' -> '));
      return;
    }
    state.set(f, 'open');
    for (const d of g.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of g.keys()) visit(f, []);
  return cycles;
}

test('every import in src/ goes down the layers of docs/ARCHITECTURE.md', () => {
  assert.deepEqual(upwardImports(graph), []);
});

test('no files of src/ import each other in a circle', () => {
  assert.deepEqual(findCycles(graph), []);
});

test('the checks see an upward import and a circle', () => {
  const loop = join(src, 'train', 'loop.ts');
  const knn = join(src, 'eval', 'knn.ts');
  assert.ok(importsOf(loop).includes(join(src, 'eval', 'features.ts')), 'the import parser finds train/loop.ts -> eval/features.ts');
  const g = new Map([
    [loop, [knn]],
    [knn, [loop]],
  ]);
  assert.deepEqual(upwardImports(g), ['src/eval/knn.ts imports src/train/loop.ts (eval -> train)']);
  assert.deepEqual(findCycles(g), ['train/loop.ts -> eval/knn.ts -> train/loop.ts']);
});
