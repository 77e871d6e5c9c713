/**
 * A run that fails (in a step, in the kNN monitor, in the end-of-run linear probe) inside a sweep: its
 * status.json says failed with the error, its summary.json agrees or is absent, the sweep records it and
 * goes on, and the process holds as many tensors as before the sweep. The failure is real: a TensorFlow.js
 * kernel of the cpu backend made to throw from a chosen moment on.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { tf } from '../helpers/tf.ts';
import type { BackendInfo } from '../../src/engine/backend.ts';
import { parseSweep } from '../../src/sweep/file.ts';
import { planSweep } from '../../src/sweep/plan.ts';
import { runSweep, type SweepEvent } from '../../src/sweep/runner.ts';
import { cli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const root = tempDir('moco3-sweep-fail-');
after(() => rmSync(root, { recursive: true, force: true }));
const backend: BackendInfo = { name: 'cpu', requested: 'cpu', device: 'test', reason: 'test', gpu: false, heapLimit: null };
const tinyFile = join(import.meta.dirname, 'fixtures', 'tiny.yaml');

/** Wrap the cpu kernel `name`: once armed, its next call throws. */
function faultyKernel(name: string) {
  const orig = tf.getKernel(name, 'cpu')!;
  let armed = false;
  tf.unregisterKernel(name, 'cpu');
  tf.registerKernel({
    ...orig,
    kernelFunc: ((args: Parameters<typeof orig.kernelFunc>[0]) => {
      if (armed) {
        armed = false;
        throw new Error(`injected failure in ${name}`);
      }
      return orig.kernelFunc(args);
    }) as typeof orig.kernelFunc,
  });
  return {
    arm: () => (armed = true),
    restore: () => {
      tf.unregisterKernel(name, 'cpu');
      tf.registerKernel(orig);
    },
  };
}

function tinyPlan(name: string, linear: boolean) {
  const doc = YAML.parse(readFileSync(tinyFile, 'utf8'));
  doc.parameters['eval.linear.enabled'] = { value: linear };
  doc.parameters['eval.linear.epochs'] = { value: 3 };
  return planSweep(parseSweep(doc, 'tiny.yaml'), { results: mkdtempSync(join(root, `${name}-`)) });
}

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

for (const [where, kernel, linear, armAt] of [
  ['a step', 'BatchMatMul', false, (e: SweepEvent) => e.type === 'train' && e.index === 1 && e.event.type === 'step' && e.event.step === 2],
  ['the kNN monitor', 'TopK', false, (e: SweepEvent) => e.type === 'train' && e.index === 1 && e.event.type === 'step' && e.event.step === 3],
  ['the linear probe', 'BatchMatMul', true, (e: SweepEvent) => e.type === 'train' && e.index === 1 && e.event.type === 'phase' && /epoch 1\//.test(e.event.text)],
  // before the loop's own status.json: the model's weights made (the sweep records the failure)
  ['the model\'s construction', 'Identity', false, (e: SweepEvent) => e.type === 'run_start' && e.index === 1],
] as const) {
  test(`a run failing in ${where} is failed in status.json (and in summary.json once it has one), the sweep goes on, no tensor is left behind`, async () => {
    const plan = tinyPlan(where.replace(/\W+/g, '-'), linear);
    const fault = faultyKernel(kernel);
    const before = tf.memory().numTensors;
    const events: SweepEvent[] = [];
    let r: Awaited<ReturnType<typeof runSweep>>;
    try {
      r = await runSweep({
        plan,
        backend,
        onEvent: (e) => {
          events.push(e);
          if (armAt(e)) fault.arm();
        },
      });
    } finally {
      fault.restore();
    }
    assert.equal(tf.memory().numTensors, before, 'tensors left behind by the failed run');
    const [failed, ok] = plan.runs;
    assert.deepEqual(r.failed, [failed!.id]);
    const st = json(join(failed!.dir, 'status.json'));
    assert.equal(st.status, 'failed');
    assert.match(st.error, new RegExp(`injected failure in ${kernel}`));
    // summary.json is written before the linear probe; a run failing before then has none
    if (linear || existsSync(join(failed!.dir, 'summary.json'))) assert.equal(json(join(failed!.dir, 'summary.json')).status, 'failed');
    assert.ok(events.some((e) => e.type === 'run_failed' && e.index === 1));
    // where it failed: the model's construction comes before the loop starts
    if (kernel === 'Identity') assert.ok(!events.some((e) => e.type === 'train' && e.index === 1 && (e.event.type === 'start' || e.event.type === 'step')), 'the run started training');
    // the sweep went on: the second run completed
    assert.equal(json(join(ok!.dir, 'status.json')).status, 'completed');
    assert.equal(json(join(ok!.dir, 'summary.json')).status, 'completed');
  });
}

test('moco3 sweep with a run that failed: the sweep goes on, says the run failed with its error, and exits 1', async () => {
  const results = mkdtempSync(join(root, 'cli-'));
  const fault = faultyKernel('Identity');
  fault.arm();
  let r: Awaited<ReturnType<typeof cli>>;
  try {
    r = await cli(['sweep', tinyFile, '--backend', 'cpu', '--results', results, '--no-baselines']);
  } finally {
    fault.restore();
  }
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /^sweep tiny: done in \S+; results in .*\n {2}\S+: failed: .*injected failure in Identity/m);
  // the table's rows: the run that failed, with its error, and the one after it, completed
  assert.match(r.out, /\(2 runs: 1 failed, 1 completed\)\n[^]*^1 +\S+ .* failed \(injected failure in Identity\)[^\n]*\n2 +\S+ .* completed$/m);
  // the plain lines' count: a failed run is through, not done
  assert.match(r.err, /^sweep: 2\/2 runs \(1 failed\) through, ETA /m);
});
