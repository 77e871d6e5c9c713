/** A run folder's descriptive files (src/runfolder/records.ts): meta.json's starts, and evaluation results kept beside a new one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configHash, configToYaml } from '../../src/config/load.ts';
import { editedConfigNote, isRunDir, loadRunConfig, writeEvalResult, writeMeta, writeRunConfig } from '../../src/runfolder/records.ts';
import { tinyConfig } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

const read = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

test('a resume adds its start to meta.json; a meta.json from before `starts` counts as the first start, its fields kept', () => {
  const dir = tempDir('moco3-records-');
  const first = { started: '2026-01-01T00:00:00.000Z', host: 'node-a', backend: 'cpu', device: 'x', command: 'moco3 train', config_hash: 'c0ffee00' };
  writeFileSync(join(dir, 'meta.json'), JSON.stringify(first));
  const second = { started: '2026-01-02T00:00:00.000Z', host: 'node-b', backend: 'native', device: 'y', command: 'moco3 train --resume', resumed_from_step: 40, config_hash: 'c0ffee00' };
  assert.equal(writeMeta(dir, second, true), null);
  const meta = read(join(dir, 'meta.json'));
  assert.equal(meta.host, 'node-b');
  assert.deepEqual(meta.starts, [
    { started: first.started, host: 'node-a', backend: 'cpu', device: 'x', command: 'moco3 train' },
    { started: second.started, host: 'node-b', backend: 'native', device: 'y', command: 'moco3 train --resume', resumed_from_step: 40 },
  ]);
  // a start that is no resume begins the list again
  writeMeta(dir, first);
  assert.equal(read(join(dir, 'meta.json')).starts.length, 1);
});

test("an evaluation's result replaces the same result (other seconds, checkpoint path); another result is kept beside it as <name>.old-<time>.json; an earlier step's has a file of its own", () => {
  const dir = tempDir('moco3-records-');
  const result = { top1: 0.5, top5: 0.9, k: 20, seconds: 3, checkpoint: '/a/step-0000008' };
  assert.equal(writeEvalResult(dir, 'knn', result), null);
  assert.equal(writeEvalResult(dir, 'knn', { ...result, seconds: 9, checkpoint: '/b/step-0000008' }), null, 'the same result again');
  assert.deepEqual(readdirSync(dir), ['knn.json']);
  assert.equal(read(join(dir, 'knn.json')).seconds, 9);
  const kept = writeEvalResult(dir, 'knn', { ...result, k: 200, top1: 0.6 });
  assert.match(kept ?? '', /^knn\.old-\d{8}T\d{6}\.json$/);
  assert.deepEqual(read(join(dir, kept!)), { ...result, seconds: 9, checkpoint: '/b/step-0000008' });
  assert.equal(read(join(dir, 'knn.json')).k, 200);
  assert.equal(writeEvalResult(dir, 'knn', { ...result, top1: 0.1 }, 4), null);
  assert.equal(read(join(dir, 'knn-step-4.json')).top1, 0.1);
  assert.equal(read(join(dir, 'knn.json')).k, 200, "the run's own result stays");
  assert.deepEqual(readdirSync(dir).sort(), ['knn-step-4.json', 'knn.json', kept!].sort());
});

test("config.yaml: a key newer than the run stands for its old value only where the file lacks it; an edit since training is said, a config as trained is not", () => {
  const dir = tempDir('moco3-records-');
  const c = tinyConfig(['train.knn_every_epochs=2']);
  writeRunConfig(dir, configToYaml(c));
  assert.equal(loadRunConfig(dir).train.knn_every_epochs, 2);
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ config_hash: configHash(c) }));
  assert.equal(editedConfigNote(dir), null);
  writeRunConfig(dir, configToYaml(c).replace(/^( {2}knn_every_epochs:).*$/m, ''));
  assert.equal(loadRunConfig(dir).train.knn_every_epochs, null, 'written before the key existed');
  assert.match(editedConfigNote(dir) ?? '', /config\.yaml: not the config the run was trained with \(it hashes to [0-9a-f]{8}; meta\.json records [0-9a-f]{8}\): edited since\?/);
});

test('a run folder is one with a config.yaml; a run that lost it is told apart from a folder that never was a run', () => {
  const dir = tempDir('moco3-records-');
  assert.equal(isRunDir(dir), false);
  assert.throws(() => loadRunConfig(dir), (e: Error) => e.message === `${dir}: no config.yaml (not a run folder)`);
  writeFileSync(join(dir, 'status.json'), '{"status": "completed"}');
  assert.equal(isRunDir(dir), false, 'a status alone');
  assert.throws(() => loadRunConfig(dir), (e: Error) => e.message === `${join(dir, 'config.yaml')}: missing: put the run's config back (each checkpoint's state.json keeps it)`);
  writeRunConfig(dir, configToYaml(tinyConfig()));
  assert.equal(isRunDir(dir), true);
});
