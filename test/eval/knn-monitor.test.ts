/** `moco3 eval knn --monitor` gives the points of the run's own kNN curve (metrics.jsonl) again from its checkpoints. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readMetrics } from '../../src/runfolder/metrics.ts';
import { cli } from '../helpers/cli.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { tempDir } from '../helpers/tmp.ts';

test("eval knn --monitor reproduces the run's kNN curve at its checkpoints (the first bank_size / query_size images); without it, the whole splits", async () => {
  const run = join(tempDir('moco3-knn-monitor-'), 'run');
  const t = await cli(['train', ...tinyTrainArgs('eval.knn.bank_size=40', 'eval.knn.query_size=20'), '--out', run]);
  assert.equal(t.code, 0, t.err);
  const curve = new Map(readMetrics(join(run, 'metrics.jsonl')).filter((r) => r.knn_top1 !== undefined).map((r) => [r.step, r.knn_top1]));
  for (const step of [0, 8]) {
    assert.ok(curve.has(step), `a kNN point at step ${step}`);
    const r = await cli(['eval', 'knn', run, '--monitor', '--checkpoint', `step-${step}`, '--json']);
    assert.equal(r.code, 0, r.err);
    const o = JSON.parse(r.out);
    assert.deepEqual([o.bank, o.queries, o.step], [40, 20, step]);
    assert.equal(o.top1, curve.get(step), `step ${step}: the curve's point`);
  }
  const whole = JSON.parse((await cli(['eval', 'knn', run, '--json'])).out);
  assert.deepEqual([whole.bank, whole.queries], [64, 32]);
});
