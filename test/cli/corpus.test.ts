/**
 * A corpus of malformed inputs across every command: configs, flags, sweep files, datasets, damaged
 * checkpoints and output paths. Each must end with exit 2, at most two lines on stderr (the error and
 * an optional hint), no stack trace, no folder made, and a good run folder left byte for byte as it was.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { main } from '../../src/cli/main.ts';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { cli as cliOut, noChildScript } from '../helpers/cli.ts';
import { tinyTrainArgs } from '../helpers/tiny.ts';
import { recordDigest, writeCheckpointFile } from '../helpers/checkpoint.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir('moco3-corpus-');
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Run the CLI in-process: exit code and stderr. (stdout stays: the test runner reports on it, also while a
 * later call runs.)
 */
async function cli(args: string[]): Promise<{ code: number; err: string }> {
  const chunks: string[] = [];
  const err = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string | Uint8Array) => (chunks.push(String(s)), true)) as typeof process.stderr.write;
  // a bench that stopped refusing would start children of this test file (test/helpers/cli.ts)
  const restoreScript = noChildScript(args);
  try {
    const code = await main(args);
    return { code, err: chunks.join('') };
  } finally {
    restoreScript();
    process.stderr.write = err;
    process.exitCode = 0;
  }
}

/** Every file under a folder with its SHA-256. */
function hashTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) {
        out[`${p.slice(root.length)}/`] = 'folder';
        walk(p);
      } else out[p.slice(root.length)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(root);
  return out;
}

// a run small enough to train in seconds
const TINY = tinyTrainArgs();
const good = join(dir, 'good');
const fresh = (name: string) => join(dir, 'new', name);
let goodHashes: Record<string, string>;

const ckptOf = (run: string, step = 8) => join(run, 'checkpoints', `step-${String(step).padStart(7, '0')}`);

/** A run stopped at its last step before its final status: `--resume` loads its checkpoint (a completed run's it leaves be). */
function asInterrupted(run: string): void {
  const p = join(run, 'status.json');
  writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), status: 'interrupted' }));
}

/** A copy of the good run, damaged by `damage`. */
function damaged(name: string, damage: (run: string) => void): string {
  const run = join(dir, 'damaged', name);
  cpSync(good, run, { recursive: true });
  damage(run);
  return run;
}

/** A safetensors file whose JSON header is replaced by `header` (the data kept). */
function withHeader(path: string, edit: (h: Record<string, any>) => unknown): void {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const h = edit(JSON.parse(buf.subarray(8, 8 + n).toString('utf8')));
  const json = Buffer.from(JSON.stringify(h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, buf.subarray(8 + n)]));
}
/** withHeader, its digest in state.json made anew: a file as a writer other than moco3's own checkpoint saving left it (its header's the damage, not its bytes since). */
function withDigest(path: string, edit: (h: Record<string, any>) => Record<string, any> | null): void {
  withHeader(path, edit);
  recordDigest(path);
}
const firstTensor = (h: Record<string, any>) => Object.keys(h).find((k) => k !== '__metadata__')!;

/** A checkpoint's model file whose encoder's class token gets `value` in its first element, as moco3 would have written it (its digest in state.json). */
function nanWeight(path: string, value: number): void {
  const st = readSafetensors(path);
  (st.tensors.get('base_encoder.cls_token')!.data as Float32Array)[0] = value;
  writeCheckpointFile(path, st.tensors, st.metadata);
}

function file(name: string, text: string): string {
  const p = join(dir, 'files', name);
  mkdirSync(join(dir, 'files'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

const tinySweep = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'tiny.yaml');
// the tiny sweep, shortened: run 1 has checkpoints at steps 0, 3, 6, 8; run 2 at 0, 3, 4
const SWEEP = ['--backend', 'cpu', '-q', '--no-baselines', ...['eval.linear.enabled=false', 'optim.epochs=2', 'optim.warmup_epochs=1'].flatMap((s) => ['--set', s])];
const sweepGood = join(dir, 'sweep');
let sweepRuns: string[];

/** A copy of the sweep's results, its runs interrupted (run 1 killed, run 2 stopped), damaged by `damage` (given the two run folders). */
function damagedSweep(name: string, damage: (run1: string, run2: string) => void): string[] {
  const results = join(dir, 'damaged-sweeps', name);
  cpSync(sweepGood, results, { recursive: true });
  const [r1, r2] = sweepRuns.map((id) => join(results, 'tiny', id)) as [string, string];
  damage(r1, r2);
  return ['sweep', tinySweep, ...SWEEP, '--results', results];
}

/** A results folder whose tiny sweep has a damaged baselines.json (and nothing else). */
function damagedBaselines(name: string): string {
  const results = join(dir, 'damaged-baselines', name);
  mkdirSync(join(results, 'tiny'), { recursive: true });
  writeFileSync(join(results, 'tiny', 'baselines.json'), '{"dataset": "synth');
  return results;
}

before(async () => {
  const r = await cli(['train', ...TINY, '--out', good]);
  assert.equal(r.code, 0, r.err);
  goodHashes = hashTree(good);
  const s = await cli(['sweep', tinySweep, ...SWEEP, '--results', sweepGood]);
  assert.equal(s.code, 0, s.err);
  sweepRuns = readdirSync(join(sweepGood, 'tiny')).filter((d) => d.startsWith('bs')).sort();
  assert.equal(sweepRuns.length, 2);
  // run 1 as a SIGKILL leaves it (status running, a dead pid), run 2 as Ctrl-C leaves it; neither has a summary
  for (const [id, status] of [[sweepRuns[0]!, 'running'], [sweepRuns[1]!, 'interrupted']]) {
    const run = join(sweepGood, 'tiny', id);
    const st = JSON.parse(readFileSync(join(run, 'status.json'), 'utf8'));
    writeFileSync(join(run, 'status.json'), JSON.stringify({ ...st, status, pid: 2 ** 22 + 1 }));
    rmSync(join(run, 'summary.json'));
  }
});

// an image folder of one class (cat), 32 train and 8 val images: nothing to tell apart
const oneClass = join(dir, 'one-class');
before(async () => {
  for (const [s, n] of [['train', 32], ['val', 8]] as const) {
    mkdirSync(join(oneClass, s, 'cat'), { recursive: true });
    for (let i = 0; i < n; i++) {
      const px = Buffer.alloc(12 * 12 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * 7 + i * 31) % 256;
      await sharp(px, { raw: { width: 12, height: 12, channels: 3 } }).png().toFile(join(oneClass, s, 'cat', `${i}.png`));
    }
  }
});

/** `untouched`: the case's --results folder stays byte for byte as it was. */
type Case = [what: string, args: () => string[], noFolder?: string, untouched?: true];

const cases: Case[] = [
  // commands and flags
  ['unknown command', () => ['trian']],
  ['unknown sub-command', () => ['eval', 'knnn', good]],
  ['a command group alone', () => ['data']],
  ['unknown flag', () => ['train', '--presett', 'smoke']],
  ['flag without its value', () => ['train', '--seed']],
  ['bad choice', () => ['train', '--backend', 'gpu9']],
  ['missing argument', () => ['eval', 'knn']],
  ['unknown preset', () => ['train', '--preset', 'laptop', '--out', fresh('p')], fresh('p')],
  ['data that is not there, into a new --results', () => ['train', ...TINY, '--data', 'imagefolder:/nonexistent/images', '--results', fresh('r9')], fresh('r9')],
  ['seed not a number', () => ['train', ...TINY, '--seed', 'abc', '--out', fresh('s1')], fresh('s1')],
  ['negative seed', () => ['train', ...TINY, '--seed', '-1', '--out', fresh('s2')], fresh('s2')],
  ['--dump-views not a count', () => ['train', ...TINY, '--dump-views', 'x', '--out', fresh('d')], fresh('d')],
  ['--dump-views empty', () => ['train', ...TINY, '--dump-views', '', '--out', fresh('d2')], fresh('d2')],
  ['--seed empty', () => ['train', ...TINY, '--seed', '', '--out', fresh('s3')], fresh('s3')],
  ['--out empty', () => ['train', ...TINY, '--out', '']],
  ['a NaN learning rate', () => ['train', ...TINY, '--set', 'optim.base_lr=.nan', '--out', fresh('n1')], fresh('n1')],
  ['batch of one (BatchNorm)', () => ['train', ...TINY, '--set', 'optim.batch_size=1', '--out', fresh('b1')], fresh('b1')],
  ['more synthetic images than memory holds', () => ['train', ...TINY, '--set', 'data.train_size=99999999', '--out', fresh('t1')], fresh('t1')],
  ['--checkpoint without --resume', () => ['train', ...TINY, '--checkpoint', 'step-3', '--out', good]],
  ['--checkpoint with --force', () => ['train', ...TINY, '--resume', '--force', '--checkpoint', 'step-3', '--out', good]],
  ['--checkpoint that does not exist', () => ['train', ...TINY, '--resume', '--checkpoint', 'step-99', '--out', good]],
  ['--checkpoint on a new folder', () => ['train', ...TINY, '--resume', '--checkpoint', '3', '--out', fresh('c')], fresh('c')],
  // a value left out: the next flag is no value (`--out --dry-run` trained into a folder named --dry-run)
  ['--out given the next flag as its value', () => ['train', ...TINY, '--out', '--dry-run'], join(process.cwd(), '--dry-run')],
  ['--results given the next flag as its value', () => ['plan', tinySweep, '--results', '--json']],
  // an empty name or path (a script's unset variable) is no flag left out
  ['--config empty', () => ['train', '--config', '', '--preset', 'smoke', '--dry-run']],
  ['--config of an empty file', () => ['train', '--config', file('empty.yaml', ''), '--preset', 'smoke', '--dry-run']],
  ['--config of comments alone', () => ['train', '--config', file('comments.yaml', '# optim:\n#   batch_size: 64\n'), '--preset', 'smoke', '--dry-run']],
  ['eval of a run whose config.yaml was cut to nothing', () => ['eval', 'knn', damaged('cfg0', (r) => writeFileSync(join(r, 'config.yaml'), ''))]],
  ['--preset empty', () => ['train', '--preset', '', '--dry-run']],
  ['--data empty', () => ['plan', tinySweep, '--preset', 'smoke', '--data', '']],
  ['--resume with --force', () => ['train', ...TINY, '--resume', '--force', '--out', good]],
  ['bench batch of one', () => ['bench', '--preset', 'smoke', '--batch', '1', '--dry-run']],
  ['plan --results a file', () => ['plan', tinySweep, '--results', join(good, 'summary.json')]],
  ['a sweep run of a class count its dataset lacks', () => ['sweep', file('classes.yaml', 'name: classes\npreset: smoke\nparameters:\n  data.num_classes: {values: [5, 11]}\n'), ...SWEEP, '--results', fresh('w20')], fresh('w20')],
  ['a Slurm time limit within the warning before it', () => ['sweep', tinySweep, '--launcher', 'slurm', '--time', '5', '--dry-run']],
  ['a slurm/jobs.json with a submission that is no record', () => {
    const results = join(dir, 'jobs-entry');
    mkdirSync(join(results, 'tiny', 'slurm'), { recursive: true });
    writeFileSync(join(results, 'tiny', 'slurm', 'jobs.json'), '{"sweep": "tiny", "submissions": [null]}');
    return ['plan', tinySweep, ...SWEEP.filter((a) => a !== '-q' && a !== '--no-baselines'), '--results', results];
  }],
  ['a damaged slurm/jobs.json', () => {
    const results = join(dir, 'jobs-damaged');
    mkdirSync(join(results, 'tiny', 'slurm'), { recursive: true });
    writeFileSync(join(results, 'tiny', 'slurm', 'jobs.json'), '{"sweep": "tiny", "subm');
    return ['plan', tinySweep, ...SWEEP.filter((a) => a !== '-q' && a !== '--no-baselines'), '--results', results];
  }],
  ['bench batch not a number', () => ['bench', '--batch', 'x']],
  ['bench steps not whole', () => ['bench', '--preset', 'smoke', '--steps', '2.5']],
  ['bench batch larger than the train split', () => ['bench', '--preset', 'smoke', '--steps', '1', '--warmup', '0', '--backend', 'cpu', '--batch', '100000']],
  ['sweep --seeds a range of a hundred million', () => ['sweep', tinySweep, '--seeds', '0-100000000', '--results', fresh('w14')], fresh('w14')],
  ['bench on data named but missing', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'cpu', '--data', `fashion-mnist:${fresh('nodata')}`]],
  // configs
  ['unknown config key', () => ['train', ...TINY, '--set', 'optim.lr=1', '--out', fresh('k1')], fresh('k1')],
  ['wrong type', () => ['train', ...TINY, '--set', 'optim.epochs=many', '--out', fresh('k2')], fresh('k2')],
  ['negative batch', () => ['train', ...TINY, '--set', 'optim.batch_size=-4', '--out', fresh('k3')], fresh('k3')],
  ['--set without =', () => ['train', ...TINY, '--set', 'optim.epochs', '--out', fresh('k4')], fresh('k4')],
  ['unknown arch', () => ['train', ...TINY, '--set', 'model.arch=vit-huge9', '--out', fresh('k5')], fresh('k5')],
  ['unknown optimizer', () => ['train', ...TINY, '--set', 'optim.name=adam9', '--out', fresh('k6')], fresh('k6')],
  ['config file missing', () => ['train', '--config', join(dir, 'nope.yaml'), '--out', fresh('f1')], fresh('f1')],
  ['config file with an unknown key', () => ['train', '--config', file('unknown.yaml', 'model:\n  depht: 3\n'), '--out', fresh('f2')], fresh('f2')],
  ['config file not YAML', () => ['train', '--config', file('bad.yaml', 'model: [1, 2\n  x: : :\n'), '--out', fresh('f3')], fresh('f3')],
  ['config file a list', () => ['train', '--config', file('list.yaml', '- 1\n- 2\n'), '--out', fresh('f4')], fresh('f4')],
  ['config file a folder', () => ['train', '--config', dir, '--out', fresh('f5')], fresh('f5')],
  ['config file wrong nesting', () => ['train', '--config', file('nest.yaml', 'optim: 3\n'), '--out', fresh('f6')], fresh('f6')],
  ['config file section a list, a flag writing into it', () => ['train', '--config', file('dlist.yaml', 'data: [fashion-mnist]\n'), '--data', 'synthetic', '--out', fresh('f7')], fresh('f7')],
  ['config file with a tag YAML does not know', () => ['train', '--config', file('tag.yaml', 'data:\n  name: !dataset synthetic\n'), '--out', fresh('f8')], fresh('f8')],
  ['--dry-run with a bad key', () => ['train', ...TINY, '--dry-run', '--set', 'train.nope=1']],
  // data
  ['unknown dataset', () => ['train', ...TINY, '--data', 'mnist9', '--out', fresh('d1')], fresh('d1')],
  ['missing fashion-mnist', () => ['train', ...TINY, '--data', 'fashion-mnist:/nonexistent/fm', '--out', fresh('d2')], fresh('d2')],
  ['truncated fashion-mnist file', () => {
    const fm = join(dir, 'fm');
    mkdirSync(fm, { recursive: true });
    for (const f of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(fm, f), Buffer.from([0, 0, 8, 3, 0, 0]));
    return ['train', ...TINY, '--data', `fashion-mnist:${fm}`, '--out', fresh('d3')];
  }, fresh('d3')],
  ['missing cifar10', () => ['train', ...TINY, '--data', 'cifar10:/nonexistent/c10', '--out', fresh('d4')], fresh('d4')],
  ['garbage cifar10 archive', () => {
    const c = join(dir, 'c10');
    mkdirSync(c, { recursive: true });
    writeFileSync(join(c, 'cifar-10-binary.tar.gz'), 'not a tarball');
    return ['train', ...TINY, '--data', `cifar10:${c}`, '--out', fresh('d5')];
  }, fresh('d5')],
  ['missing image folder', () => ['train', ...TINY, '--data', 'imagefolder:/nonexistent/imgs', '--out', fresh('d6')], fresh('d6')],
  ['image folder without train/', () => {
    mkdirSync(join(dir, 'imgs1'), { recursive: true });
    return ['train', ...TINY, '--data', `imagefolder:${join(dir, 'imgs1')}`, '--out', fresh('d7')];
  }, fresh('d7')],
  ['image folder with an undecodable image', () => {
    const root = join(dir, 'imgs2');
    for (const s of ['train', 'val']) {
      for (const c of ['cat', 'dog']) {
        mkdirSync(join(root, s, c), { recursive: true });
        for (let i = 0; i < 32; i++) writeFileSync(join(root, s, c, `${i}.png`), 'not a png');
      }
    }
    return ['train', ...TINY, '--data', `imagefolder:${root}`, '--out', fresh('d8')];
  }, fresh('d8')],
  ['image folder of one class (no cache made in it)', () => ['train', ...TINY, '--data', `imagefolder:${oneClass}`, '--set', 'data.train_size=null', '--set', 'data.test_size=null', '--out', fresh('d10')], join(oneClass, '.moco3-cache')],
  ['eval linear of a run whose data is an image folder of one class', () => ['eval', 'linear', damaged('e7', (r) => {
    const p = join(r, 'config.yaml');
    const text = readFileSync(p, 'utf8').replace(/^  name: synthetic$/m, '  name: imagefolder').replace(/^  path: null$/m, `  path: ${oneClass}`);
    writeFileSync(p, text.replace(/^  (train|test)_size: \d+$/gm, '  $1_size: null'));
  }), '--backend', 'cpu'], join(oneClass, '.moco3-cache')],
  ['train split smaller than one batch', () => ['train', ...TINY, '--set', 'data.train_size=8', '--out', fresh('d9')], fresh('d9')],
  ['data info of an unknown set', () => ['data', 'info', 'mnist9']],
  ['data preview without .png', () => ['data', 'preview', '--preset', 'smoke', '--out', join(dir, 'new', 'views.jpg')]],
  ['data preview --out under a file', () => ['data', 'preview', '--preset', 'smoke', '--out', join(good, 'summary.json', 'views.png')]],
  ['help of no such command', () => ['help', 'trian']],
  ['data fetch of an unknown set', () => ['data', 'fetch', 'mnist9']],
  // output locations
  ['--out names a file', () => ['train', ...TINY, '--out', join(good, 'config.yaml')]],
  ['--out under a file', () => ['train', ...TINY, '--out', join(good, 'config.yaml', 'run')]],
  ['--out deep under a file', () => ['train', ...TINY, '--out', join(good, 'config.yaml', 'a', 'b')]],
  ['--results names a file', () => ['train', ...TINY, '--results', join(good, 'summary.json')]],
  ['sweep --results names a file', () => ['sweep', tinySweep, '--backend', 'cpu', '-q', '--results', join(good, 'summary.json')]],
  ['report --results names a file', () => ['report', '--results', join(good, 'summary.json')]],
  // resume
  ['resume with another config', () => ['train', ...TINY, '--set', 'optim.base_lr=0.5', '--resume', '--out', good]],
  ['resume with another seed', () => ['train', ...TINY, '--seed', '7', '--resume', '--out', good]],
  // damaged checkpoints
  ['truncated state.json', () => ['train', ...TINY, '--resume', '--out', damaged('st1', (r) => truncateSync(join(ckptOf(r), 'state.json'), 40))]],
  ['empty state.json', () => ['train', ...TINY, '--resume', '--out', damaged('st2', (r) => writeFileSync(join(ckptOf(r), 'state.json'), ''))]],
  ['state.json null', () => ['train', ...TINY, '--resume', '--out', damaged('st3', (r) => writeFileSync(join(ckptOf(r), 'state.json'), 'null'))]],
  ['state.json step a string', () => ['train', ...TINY, '--resume', '--out', damaged('st4', (r) => {
    const p = join(ckptOf(r), 'state.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), step: '8' }));
  })]],
  ['state.json without config_hash', () => ['train', ...TINY, '--resume', '--out', damaged('st5', (r) => {
    const p = join(ckptOf(r), 'state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    delete s.config_hash;
    writeFileSync(p, JSON.stringify(s));
  })]],
  ['state.json optimizer null', () => ['train', ...TINY, '--resume', '--out', damaged('st6', (r) => {
    const p = join(ckptOf(r), 'state.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), optimizer: null }));
  })]],
  ['state.json of another step', () => ['train', ...TINY, '--resume', '--out', damaged('st7', (r) => {
    const p = join(ckptOf(r), 'state.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), step: 5 }));
  })]],
  ['state.json files of no digest', () => ['train', ...TINY, '--resume', '--out', damaged('st8', (r) => {
    const p = join(ckptOf(r), 'state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    writeFileSync(p, JSON.stringify({ ...s, files: { ...s.files, 'model.safetensors': { bytes: 10 } } }));
  })]],
  ['no model.safetensors beside state.json', () => ['train', ...TINY, '--resume', '--out', damaged('m1', (r) => rmSync(join(ckptOf(r), 'model.safetensors')))]],
  ['safetensors header null', () => ['train', ...TINY, '--resume', '--out', damaged('m2', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), () => null))]],
  ['entry without data_offsets', () => ['train', ...TINY, '--resume', '--out', damaged('m3', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), (h) => {
    delete h[firstTensor(h)].data_offsets;
    return h;
  }))]],
  ['shape a string', () => ['train', ...TINY, '--resume', '--out', damaged('m4', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), (h) => {
    h[firstTensor(h)].shape = '4';
    return h;
  }))]],
  ['unknown dtype', () => ['train', ...TINY, '--resume', '--out', damaged('m5', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), (h) => {
    h[firstTensor(h)].dtype = 'F16';
    return h;
  }))]],
  ['a float weight stored as I32 (4 bytes, as F32)', () => ['train', ...TINY, '--resume', '--out', damaged('m5b', (r) => asInterrupted(r) ?? withDigest(join(ckptOf(r), 'model.safetensors'), (h) => {
    h[Object.keys(h).find((k) => k !== '__metadata__' && !k.endsWith('num_batches_tracked'))!].dtype = 'I32';
    return h;
  }))]],
  ['an optimizer slot stored as I32', () => ['train', ...TINY, '--resume', '--out', damaged('m5c', (r) => asInterrupted(r) ?? withDigest(join(ckptOf(r), 'optimizer.safetensors'), (h) => {
    h[firstTensor(h)].dtype = 'I32';
    return h;
  }))]],
  ['eval of a float weight stored as I32', () => ['eval', 'knn', damaged('m5d', (r) => withDigest(join(ckptOf(r), 'model.safetensors'), (h) => {
    h[Object.keys(h).find((k) => k !== '__metadata__' && !k.endsWith('num_batches_tracked'))!].dtype = 'I32';
    return h;
  }))]],
  ['state.json with the state of another optimizer', () => ['train', ...TINY, '--resume', '--out', damaged('m5e', (r) => {
    asInterrupted(r);
    const p = join(ckptOf(r), 'state.json');
    const st = JSON.parse(readFileSync(p, 'utf8'));
    writeFileSync(p, JSON.stringify({ ...st, optimizer: { ...st.optimizer, name: 'lamb' } }));
  })]],
  ['an optimizer slot of the wrong shape (the same bytes, transposed)', () => ['train', ...TINY, '--resume', '--out', damaged('m5f', (r) => asInterrupted(r) ?? withHeader(join(ckptOf(r), 'optimizer.safetensors'), (h) => {
    const name = Object.keys(h).find((k) => k !== '__metadata__' && h[k].shape.length === 2 && h[k].shape[0] !== h[k].shape[1])!;
    h[name].shape = [...h[name].shape].reverse();
    return h;
  }))]],
  ['overlapping offsets', () => ['train', ...TINY, '--resume', '--out', damaged('m6', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), (h) => {
    const names = Object.keys(h).filter((k) => k !== '__metadata__');
    const [a, b] = [h[names[0]!], h[names[1]!]];
    [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
    return h;
  }))]],
  ['truncated model.safetensors', () => ['train', ...TINY, '--resume', '--out', damaged('m7', (r) => {
    const p = join(ckptOf(r), 'model.safetensors');
    truncateSync(p, statSync(p).size - 10);
  })]],
  ['empty model.safetensors', () => ['train', ...TINY, '--resume', '--out', damaged('m8', (r) => writeFileSync(join(ckptOf(r), 'model.safetensors'), ''))]],
  ['garbage optimizer.safetensors', () => ['train', ...TINY, '--resume', '--out', damaged('m9', (r) => writeFileSync(join(ckptOf(r), 'optimizer.safetensors'), 'garbage, not a tensor file'))]],
  ['truncated last.json', () => ['train', ...TINY, '--resume', '--out', damaged('l1', (r) => writeFileSync(join(r, 'checkpoints', 'last.json'), '{"step": 8, "di'))]],
  ['last.json naming a missing folder', () => ['train', ...TINY, '--resume', '--out', damaged('l2', (r) => writeFileSync(join(r, 'checkpoints', 'last.json'), '{"step": 9, "dir": "step-0000009"}'))]],
  ['last.json of wrong types', () => ['train', ...TINY, '--resume', '--out', damaged('l3', (r) => writeFileSync(join(r, 'checkpoints', 'last.json'), '{"step": "x", "dir": 3}'))]],
  ['checkpoint folder a file', () => ['train', ...TINY, '--resume', '--out', damaged('l4', (r) => {
    rmSync(ckptOf(r), { recursive: true });
    writeFileSync(ckptOf(r), 'x');
  })]],
  // the run folder's own files
  ['truncated status.json', () => ['train', ...TINY, '--resume', '--out', damaged('r1', (r) => writeFileSync(join(r, 'status.json'), '{"status": "runn'))]],
  ['status.json of an unknown status', () => ['train', ...TINY, '--resume', '--out', damaged('r2', (r) => writeFileSync(join(r, 'status.json'), '{"status": "walking", "step": 3}'))]],
  ['status.json step a string', () => ['eval', 'knn', damaged('r3', (r) => writeFileSync(join(r, 'status.json'), '{"status": "completed", "step": "8"}'))]],
  ['summary.json not JSON', () => ['eval', 'knn', damaged('r4', (r) => writeFileSync(join(r, 'summary.json'), 'garbage'))]],
  ['--dry-run with an empty --out', () => ['train', '--preset', 'smoke', '--dry-run', '--out', '']],
  ['.lock a folder', () => ['train', ...TINY, '--resume', '--out', damaged('r5', (r) => mkdirSync(join(r, '.lock')))]],
  ['metrics.jsonl damaged before its last line', () => {
    const results = join(dir, 'rep1');
    const run = join(results, 'train', 'run');
    mkdirSync(join(results, 'train'), { recursive: true });
    cpSync(good, run, { recursive: true });
    const p = join(run, 'metrics.jsonl');
    const lines = readFileSync(p, 'utf8').split('\n');
    lines[1] = '{"step": 1, "lo';
    writeFileSync(p, lines.join('\n'));
    return ['report', '--results', results];
  }],
  // eval
  ['eval of a missing folder', () => ['eval', 'knn', join(dir, 'nope')]],
  ['eval of a folder that is no run', () => ['eval', 'knn', join(dir, 'files')]],
  ['eval with a damaged config.yaml', () => ['eval', 'knn', damaged('e1', (r) => writeFileSync(join(r, 'config.yaml'), 'model: [\n'))]],
  ['eval with a config.yaml of wrong types', () => ['eval', 'linear', damaged('e2', (r) => writeFileSync(join(r, 'config.yaml'), 'optim:\n  epochs: many\n'))]],
  ['eval of a damaged model.safetensors', () => ['eval', 'knn', damaged('e3', (r) => withHeader(join(ckptOf(r), 'model.safetensors'), () => [1, 2]))]],
  ['eval knn of a checkpoint whose weights hold NaN (nothing recorded)', () => ['eval', 'knn', damaged('e8', (r) => nanWeight(join(ckptOf(r), 'model.safetensors'), NaN))], join(dir, 'damaged', 'e8', 'knn.json')],
  ['eval linear of a checkpoint whose weights hold infinity (nothing recorded)', () => ['eval', 'linear', damaged('e9', (r) => nanWeight(join(ckptOf(r), 'model.safetensors'), -Infinity))], join(dir, 'damaged', 'e9', 'linear.json')],
  ['eval --checkpoint missing', () => ['eval', 'knn', good, '--checkpoint', join(dir, 'nope')]],
  ['eval --checkpoint empty', () => ['eval', 'knn', good, '--checkpoint', '']],
  // a train --force stopped half-way through moving the run aside: its checkpoints are in the other folder
  ['eval of a run whose move aside was stopped half-way', () => ['eval', 'knn', damaged('e12', (r) => {
    const to = `${basename(r)}.old-20260101T000000`;
    mkdirSync(join(dirname(r), to));
    renameSync(join(r, 'checkpoints'), join(dirname(r), to, 'checkpoints'));
    writeFileSync(join(r, '.aside.json'), JSON.stringify({ to }));
  })]],
  ['eval --checkpoint of another run (its result would be filed under this one)', () => {
    const other = damaged('e5', () => {});
    return ['eval', 'knn', good, '--checkpoint', ckptOf(other)];
  }],
  ['train --resume --checkpoint outside the run', () => ['train', ...TINY, '--resume', '--checkpoint', ckptOf(damaged('e6', () => {})), '--out', good]],
  ['eval --k 0', () => ['eval', 'knn', good, '--k', '0']],
  ['eval --k a fraction', () => ['eval', 'knn', good, '--k', '2.5']],
  ['eval --solo with --k', () => ['eval', 'knn', good, '--solo', '--k', '5']],
  ['eval linear --epochs -1', () => ['eval', 'linear', good, '--epochs', '-1']],
  // a probe whose loss goes NaN would score 0%, below chance: nothing recorded
  ['eval linear --lr so large the probe diverges', () => ['eval', 'linear', good, '--lr', '1e300', '--epochs', '1']],
  ['eval linear --lr whose lr used (x batch / 256) is beyond a float', () => ['eval', 'linear', good, '--lr', '1e307', '--batch-size', '2560']],
  ['eval linear --epochs beyond a safe integer', () => ['eval', 'linear', good, '--epochs', '1e21']],
  ['eval knn --k in hex', () => ['eval', 'knn', good, '--k', '0x10']],
  ['eval knn --t empty', () => ['eval', 'knn', good, '--t', '']],
  ['bench --batch empty', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'cpu', '--batch', '']],
  ['bench --warmup empty', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'cpu', '--warmup', '']],
  // the --set came last and won without a word
  ['bench --batch with --set optim.batch_size', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'cpu', '--batch', '32', '--set', 'optim.batch_size=64']],
  // bench writes no results: the flag was listed and did nothing
  ['bench --results', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'cpu', '--results', fresh('benchres')], fresh('benchres')],
  ['bench --backend all on data named but missing', () => ['bench', '--preset', 'smoke', '--steps', '1', '--backend', 'all', '--data', `fashion-mnist:${fresh('nodata3')}`]],
  ['data preview --step beyond a safe integer', () => ['data', 'preview', 'synthetic', '--step', '1e300', '--out', join(fresh('pv'), 'x.png')], fresh('pv')],
  ['report --spike-window 1.5', () => ['report', good, '--spike-window', '1.5']],
  ['eval knn of an empty run path', () => ['eval', 'knn', '']],
  ['train --dry-run into a file (as the run would be refused)', () => ['train', ...TINY, '--dry-run', '--out', join(good, 'summary.json')]],
  ['train --dry-run into a folder of other files', () => ['train', ...TINY, '--dry-run', '--out', dirname(file('notes.txt', 'notes'))]],
  ['report of an empty sweep path (not every sweep)', () => ['report', '']],
  ['--data with an empty PATH after the colon', () => ['train', '--data', 'fashion-mnist:', '--dry-run']],
  ['baselines --results empty (not the current folder)', () => ['baselines', tinySweep, '--backend', 'cpu', '--results', ''], join(process.cwd(), 'tiny')],
  ['sweep --results empty', () => ['sweep', tinySweep, '--dry-run', '--results', '']],
  ['data fetch --dir empty', () => ['data', 'fetch', 'cifar10', '--dir', '']],
  ['data info --data-path empty', () => ['data', 'info', 'fashion-mnist', '--data-path', '']],
  ['eval of a run without checkpoints', () => ['eval', 'knn', damaged('e4', (r) => rmSync(join(r, 'checkpoints'), { recursive: true }))]],
  // sweeps and plans
  ['unknown sweep', () => ['sweep', 'nope-sweep', '--results', fresh('w1')], fresh('w1')],
  ['sweep file missing', () => ['sweep', join(dir, 'nope.yaml'), '--results', fresh('w2')], fresh('w2')],
  ['sweep file not YAML', () => ['sweep', file('s1.yaml', 'name: [x\n'), '--results', fresh('w3')], fresh('w3')],
  ['sweep file unknown top key', () => ['sweep', file('s2.yaml', 'name: s2\nmethod: grid\nparamters: {}\n'), '--results', fresh('w4')], fresh('w4')],
  ['sweep file unknown config key', () => ['sweep', file('s3.yaml', 'name: s3\nmethod: grid\nparameters:\n  optim.lr: {value: 1}\n'), '--results', fresh('w5')], fresh('w5')],
  ['sweep file random method', () => ['sweep', file('s4.yaml', 'name: s4\nmethod: random\nparameters:\n  optim.base_lr: {value: 1}\n'), '--results', fresh('w6')], fresh('w6')],
  ['sweep file empty values', () => ['sweep', file('s5.yaml', 'name: s5\nmethod: grid\nparameters:\n  optim.base_lr: {values: []}\n'), '--results', fresh('w7')], fresh('w7')],
  ['sweep file a bad value type', () => ['sweep', file('s6.yaml', 'name: s6\nmethod: grid\nparameters:\n  optim.base_lr: {value: fast}\n'), '--results', fresh('w8')], fresh('w8')],
  ['sweep file a folder', () => ['sweep', join(dir, 'files') + '/', '--results', fresh('w9')], fresh('w9')],
  ['sweep --seeds not a list', () => ['sweep', tinySweep, '--seeds', 'x', '--results', fresh('w10')], fresh('w10')],
  ['sweep --optimizer unknown', () => ['sweep', tinySweep, '--optimizer', 'adam9', '--results', fresh('w11')], fresh('w11')],
  ['sweep --set unknown key', () => ['sweep', tinySweep, '--set', 'optim.lr=1', '--results', fresh('w12')], fresh('w12')],
  ['sweep on data named but missing', () => ['sweep', tinySweep, '--backend', 'cpu', '-q', '--data', `fashion-mnist:${fresh('nodata2')}`, '--results', fresh('w14')], fresh('w14')],
  ['sweep whose runs cannot fill a batch', () => ['sweep', tinySweep, '--backend', 'cpu', '-q', '--set', 'data.train_size=8', '--results', fresh('w13')], fresh('w13')],
  ['plan with an unknown preset', () => ['plan', tinySweep, '--preset', 'laptop']],
  ['--data synthetic with a PATH it would not read', () => ['train', '--data', 'synthetic:/my/images', '--dry-run']],
  ['baselines of an unknown sweep', () => ['baselines', 'nope-sweep', '--results', fresh('b1')], fresh('b1')],
  ['baselines with a bad --set', () => ['baselines', tinySweep, '--set', 'optim.epochs=many', '--results', fresh('b2')], fresh('b2')],
  ['baselines over a damaged baselines.json', () => ['baselines', tinySweep, '--backend', 'cpu', '--results', damagedBaselines('d1')], undefined, true],
  ['sweep over a damaged baselines.json (refused before any run trains)', () => ['sweep', tinySweep, ...SWEEP.filter((a) => a !== '--no-baselines'), '--results', damagedBaselines('d2')], undefined, true],
  ['baselines --results names a file', () => ['baselines', tinySweep, '--backend', 'cpu', '--results', join(good, 'summary.json')]],
  ['report with an unknown flag', () => ['report', '--resuls', dir]],
  // a sweep whose runs to resume have damaged checkpoints: refused before anything starts
  ['sweep: truncated state.json of a run to resume', () => damagedSweep('w1', (r1) => truncateSync(join(ckptOf(r1), 'state.json'), 30)), undefined, true],
  ['sweep: the second run\'s .lock a folder (refused before the first run trains)', () => damagedSweep('w9', (_r1, r2) => mkdirSync(join(r2, '.lock'))), undefined, true],
  ['sweep: the second run damaged, the first intact', () => damagedSweep('w2', (_r1, r2) => withHeader(join(ckptOf(r2, 4), 'model.safetensors'), () => null)), undefined, true],
  ['sweep: truncated last.json', () => damagedSweep('w3', (r1) => writeFileSync(join(r1, 'checkpoints', 'last.json'), '{"step": 8, "di')), undefined, true],
  ['sweep: last.json naming a missing folder', () => damagedSweep('w4', (r1) => rmSync(ckptOf(r1), { recursive: true })), undefined, true],
  ['sweep: no optimizer.safetensors', () => damagedSweep('w5', (_r1, r2) => rmSync(join(ckptOf(r2, 4), 'optimizer.safetensors'))), undefined, true],
  ['sweep: a failed run with a truncated model.safetensors', () => damagedSweep('w6', (r1) => {
    const st = join(r1, 'status.json');
    writeFileSync(st, JSON.stringify({ ...JSON.parse(readFileSync(st, 'utf8')), status: 'failed', error: 'a step failed' }));
    truncateSync(join(ckptOf(r1), 'model.safetensors'), 100);
  }), undefined, true],
  ['sweep: every checkpoint of a run damaged', () => damagedSweep('w7', (r1) => {
    for (const s of [0, 3, 6, 8]) writeFileSync(join(ckptOf(r1, s), 'state.json'), '');
  }), undefined, true],
  ['sweep --run-index of a damaged run', () => [...damagedSweep('w8', (_r1, r2) => writeFileSync(join(ckptOf(r2, 4), 'state.json'), 'null')), '--run-index', '2'], undefined, true],
];

test(`corpus: ${cases.length} malformed inputs: exit 2, at most two lines, no trace, nothing made, the good run untouched`, async () => {
  assert.ok(cases.length >= 60);
  const failures: string[] = [];
  for (const [what, args, noFolder, untouched] of cases) {
    const argv = args();
    const kept = untouched ? argv[argv.indexOf('--results') + 1]! : null;
    const keptHashes = kept ? hashTree(kept) : null;
    const r = await cli(argv);
    const lines = r.err.trimEnd().split('\n').filter((l) => l);
    const problems: string[] = [];
    if (r.code !== 2) problems.push(`exit ${r.code}`);
    if (lines.length === 0 || lines.length > 2) problems.push(`${lines.length} lines`);
    if (/^\s+at .+\(.+:\d+:\d+\)$|^\s+at .+:\d+:\d+$/m.test(r.err)) problems.push('a stack trace');
    if (noFolder && existsSync(noFolder)) problems.push(`made ${noFolder}`);
    if (kept && JSON.stringify(hashTree(kept)) !== JSON.stringify(keptHashes)) problems.push(`changed ${kept}`);
    // the backend says which it is only once a run (or an evaluation) starts: bad input is its one line alone
    if (/^moco3: backend /m.test(r.err)) problems.push('the backend line');
    if (process.env.MOCO3_CORPUS_SHOW) process.stdout.write(`## ${what}\n${r.err}`);
    if (problems.length) failures.push(`${what} (${argv.slice(0, 3).join(' ')} ...): ${problems.join(', ')}:\n${r.err}`);
  }
  assert.deepEqual(hashTree(good), goodHashes, 'the good run folder changed');
  assert.equal(failures.length, 0, failures.join('\n'));
});

test('the lines say what is wrong and what to do; the offered older checkpoint resumes', async () => {
  const expect: [string[], RegExp][] = [
    // eval of a run a train --force was moving aside when it was stopped: not "no checkpoint to evaluate"
    [['eval', 'knn', damaged('x12', (r) => {
      const to = `${basename(r)}.old-20260101T000000`;
      mkdirSync(join(dirname(r), to));
      renameSync(join(r, 'checkpoints'), join(dirname(r), to, 'checkpoints'));
      writeFileSync(join(r, '.aside.json'), JSON.stringify({ to }));
    })], /x12: its files are being moved aside by `train --force`, or such a move was stopped half-way \(\.aside\.json, to \S+x12\.old-20260101T000000\); a stopped one is put back by the next `moco3 train` or `moco3 sweep` of this run: evaluate after that$/],
    // a completed run asked for again with another config: that config never ran, so it is not "already completed"
    [['train', ...TINY, '--set', 'optim.base_lr=0.5', '--out', good], /good: holds a completed run of another config: optim\.base_lr 0\.0015 -> 0\.5; --force trains this config there anew \(the run moved aside\), or give another --out$/],
    // a diverged run asked for again with another config: not "already diverged" either
    [['train', ...TINY, '--set', 'optim.base_lr=0.5', '--out', damaged('x20', (r) => {
      const p = join(r, 'status.json');
      writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), status: 'diverged', diverged_at: 8 }));
    })], /x20: holds a diverged run of another config: optim\.base_lr 0\.0015 -> 0\.5; --force trains/],
    // a run stopped before its end, trained again without --resume or --force
    [['train', ...TINY, '--out', damaged('x21', asInterrupted), '--dry-run'], /x21: holds an interrupted run, its last checkpoint at step 8; pass --resume to continue it or --force to start over$/],
    // three files not a run's: all named, none left out
    [['train', ...TINY, '--out', (() => {
      const d = join(dir, 'three');
      mkdirSync(d);
      for (const f of ['a', 'b', 'c']) writeFileSync(join(d, f), '');
      return d;
    })()], /three: holds files that are not a moco3 run's \([abc], [abc], [abc]\); give a new or empty folder as --out$/],
    // --dry-run refuses what the run would refuse
    [['train', ...TINY, '--set', 'optim.base_lr=0.5', '--resume', '--out', good, '--dry-run'], /good: holds a completed run of another config: optim\.base_lr 0\.0015 -> 0\.5/],
    // config.yaml edited, then --resume with the run's own config: the keys that differ from the checkpoint's config
    [['train', '--resume', '--backend', 'cpu', '-q', '--out', damaged('x0', (r) => {
      const p = join(r, 'config.yaml');
      writeFileSync(p, readFileSync(p, 'utf8').replace(/base_lr: .*/, 'base_lr: 0.5'));
    })], /x0: was trained with another config: optim\.base_lr 0\.0015 -> 0\.5; to resume it, start again with --force/],
    [['report', good], /good is a run folder of moco3 train, in no sweep; moco3 report takes a sweep folder \(results\/<sweep>\); for one run: moco3 eval knn\|linear /],
    [['train', ...TINY, '--resume', '--out', damaged('x1', (r) => truncateSync(join(ckptOf(r), 'state.json'), 30))], /step-0000008\/state\.json: state is not valid JSON \(truncated\?\); resume from the previous checkpoint with --checkpoint step-6 .*or start again with --force$/],
    [['train', ...TINY, '--set', 'optim.base_lr=0.5', '--seed', '3', '--resume', '--out', good], /good: holds a completed run of another config: optim\.base_lr 0\.0015 -> 0\.5, seed 0 -> 3; --force trains this config there anew/],
    [['eval', 'knn', damaged('x2', (r) => rmSync(join(ckptOf(r), 'model.safetensors')))], /step-0000008\/model\.safetensors: missing; evaluate the previous checkpoint with --checkpoint .*step-0000006$/],
    // the pointer to the newest damaged: the checkpoint offered is the newest complete one, not a "previous" one
    [['eval', 'knn', damaged('x13', (r) => writeFileSync(join(r, 'checkpoints', 'last.json'), '{"step": '))], /last\.json: .*; evaluate the newest complete checkpoint with --checkpoint .*step-0000008$/],
    [['train', ...TINY, '--resume', '--out', damaged('x14', (r) => writeFileSync(join(r, 'checkpoints', 'last.json'), '[]'))], /last\.json: expected \{"step": N, "dir": "step-N"\}, got \[\]; resume from the newest complete checkpoint with --checkpoint step-8 /],
    // and none complete: none is "older" than a pointer that names none
    [['eval', 'knn', damaged('x16', (r) => {
      writeFileSync(join(r, 'checkpoints', 'last.json'), '[]');
      for (const c of readdirSync(join(r, 'checkpoints'))) if (c.startsWith('step-')) rmSync(join(r, 'checkpoints', c, 'model.safetensors'));
    })], /last\.json: expected \{"step": N, "dir": "step-N"\}, got \[\]; no complete checkpoint to evaluate$/],
    [['train', ...TINY, '--resume', '--out', damaged('x3', (r) => {
      for (const s of [0, 3, 6, 8]) rmSync(join(ckptOf(r, s), 'optimizer.safetensors'));
    })], /optimizer\.safetensors: missing; no older complete checkpoint: start again with --force$/],
    // a model.safetensors copied in from a run of another model size: found from the headers, before the model is built,
    // with the older checkpoint offered
    [['train', ...TINY, '--resume', '--out', damaged('x8', (r) => {
      const p = join(ckptOf(r), 'model.safetensors');
      const { tensors, metadata } = readSafetensors(p);
      for (const [name, t] of tensors) if (name.endsWith('encoder.norm.weight')) tensors.set(name, { dtype: 'F32', shape: [t.shape[0]! + 1], data: new Float32Array(t.shape[0]! + 1) });
      writeSafetensors(p, tensors, metadata);
    })], /step-0000008: model\.safetensors base_encoder\.norm\.weight has shape \[\d+\] but optimizer\.safetensors base_encoder\.norm\.weight\.\w+ has \[\d+\]: the files are of different models \(one copied in from another run\?\); resume from the previous checkpoint with --checkpoint step-6 /],
    // a model.safetensors of a deeper model, its optimizer.safetensors too (or only the base encoder read): the tensor
    // with no place in the model is named, not left unread
    ...(['train', 'eval'] as const).map((cmd, i): [string[], RegExp] => {
      const r = damaged(`x9${i}`, (d) => {
        const p = join(ckptOf(d), 'model.safetensors');
        const { tensors, metadata } = readSafetensors(p);
        tensors.set('base_encoder.blocks.9.norm1.weight', { dtype: 'F32', shape: [8], data: new Float32Array(8) });
        // the folder copied whole from that run: its state.json's digests are the files'
        writeCheckpointFile(p, tensors, metadata);
        // a run stopped at its last step, so that train --resume loads the checkpoint
        const st = join(d, 'status.json');
        if (cmd === 'train') writeFileSync(st, JSON.stringify({ ...JSON.parse(readFileSync(st, 'utf8')), status: 'interrupted' }));
      });
      return [cmd === 'train' ? ['train', ...TINY, '--resume', '--out', r] : ['eval', 'knn', r], /step-0000008\/model\.safetensors: holds base_encoder\.blocks\.9\.norm1\.weight, which the run's model has no place for: the file is of another model \(copied in from another run\?\)$/];
    }),
    [['train', ...TINY, '--out', '--dry-run'], /^moco3: --out: expected a value, got the option --dry-run \(the value left out\?\)\n\(moco3 train --help lists the options\)$/],
    [['train', '--preset', '', '--dry-run'], /--preset <name>' argument '' is invalid\. expected a name, got an empty string/],
    [['train', '--config', file('dlist.yaml', 'data: [fashion-mnist]\n'), '--data', 'synthetic', '--dry-run'], /dlist\.yaml: data: expected a mapping of data keys \(name, path, .*\), got \["fashion-mnist"\]$/],
    [['train', '--config', file('tag.yaml', 'data:\n  name: !dataset synthetic\n'), '--dry-run'], /tag\.yaml: not valid YAML: Unresolved tag: !dataset at line 2/],
    // the --set that broke a rule across keys is the one named: the later of two that give its keys
    [['train', ...TINY, '--set', 'optim.batch_size=128', '--dry-run'], /^moco3: --set optim\.batch_size=128: data\.train_size: 64 images cannot fill one batch of optim\.batch_size 128/],
    [['bench', '--preset', 'smoke', '--batch', '4096', '--dry-run'], /^moco3: --batch 4096: data\.train_size: 2560 images cannot fill one batch of optim\.batch_size 4096/],
    [['sweep', file('classes.yaml', 'name: classes\npreset: smoke\nparameters:\n  data.num_classes: {values: [5, 11]}\n'), ...SWEEP, '--dry-run'], /classes\.yaml: data\.num_classes: the synthetic dataset has 2\.\.10 classes, got 11$/],
    [['sweep', tinySweep, '--launcher', 'slurm', '--time', '5', '--dry-run'], /^moco3: --time 5: a time limit of 300 s, not longer than the default --signal-s 300 /],
    [['help', 'trian'], /^moco3: help trian: unknown command \(one of: train, bench, /],
    // and in a command group, as at the top
    [['eval', 'help', 'knm'], /^moco3 eval: help knm: unknown command \(one of: knn, linear\)$/],
    // and through the top-level help, to any depth
    [['help', 'eval', 'knm'], /^moco3 eval: help knm: unknown command \(one of: knn, linear\)$/],
    // an empty --checkpoint (a script's unset variable): said, not looked up as '--checkpoint : no such checkpoint'
    [['eval', 'knn', good, '--checkpoint', ''], /^moco3 eval knn: option '--checkpoint <step>' argument '' is invalid\. expected step-N, N or a checkpoint folder, got an empty string\.$/m],
    [['data', 'preview', '--preset', 'smoke', '--out', join(good, 'summary.json', 'views.png')], /^moco3: --out .*\/summary\.json\/views\.png: its folder .*\/good\/summary\.json: is a file, not a folder/],
    // a run folder for a sweep file: said as such, not "not found", and where a run folder goes
    [['baselines', good], /^moco3: \S+\/good: a run folder, not a sweep file \(give a sweep's name or file; moco3 eval takes a run folder\)$/],
    // a run folder for its config file: the file it holds is named
    [['train', '--config', good, '--dry-run'], /^moco3: \S+\/good: a run folder, not a config file: give its config, \S+\/good\/config\.yaml$/],
    // a run folder as the results folder: the sweep's runs would go inside the run's files
    [['plan', tinySweep, '--results', good], new RegExp(`^moco3: --results ${good}: ${good} is a run folder \\(it holds config\\.yaml and status\\.json\\); give the folder that holds sweeps \\(the default: results\\)$`)],
    [['sweep', tinySweep, ...SWEEP, '--results', good, '--dry-run'], /^moco3: --results \S+: \S+ is a run folder \(it holds config\.yaml and status\.json\)/],
    // a file where a folder goes: said before a byte is downloaded, or as such (not "no data at")
    [['data', 'fetch', 'cifar10', '--dir', file('afile', 'x'), '--mirror', 'http://127.0.0.1:9/'], /^moco3: --dir \S+afile: is a file, not a folder: give a folder path$/],
    [['data', 'info', 'fashion-mnist', '--data-path', file('afile2', 'x')], /^moco3: --data-path \S+afile2: is a file, not a folder: give a folder path$/],
    // a CIFAR batch file named as its data: fetch is told to fill the folder it is in, not the file
    [['data', 'preview', 'cifar10', '--data-path', file('test_batch.bin', 'x'), '--out', join(fresh('pvc'), 'x.png')], /^moco3: cifar10: \S+\/files\/test_batch\.bin is a file, not cifar-10-binary\.tar\.gz or a folder holding it \(run: moco3 data fetch cifar10 --dir \S+\/files; or download \S+ into \S+\/files, /],
    // the dataset's folder in --dir a file: said before the download too
    [['data', 'fetch', 'fashion-mnist', '--dir', (() => {
        const d = join(dir, 'files', 'fmdir');
        mkdirSync(d, { recursive: true });
        writeFileSync(join(d, 'fashion-mnist'), 'x');
        return d;
      })(), '--mirror', 'http://127.0.0.1:9/'], /^moco3: --dir \S+fmdir: \S+fmdir\/fashion-mnist is a file, not a folder: give a folder path$/],
    // the flag given is named, not the --data it would become
    [['data', 'preview', 'synthetic', '--data-path', dir, '--out', join(fresh('pvs'), 'x.png')], /^moco3: --data-path: the synthetic dataset is built in; it reads no path$/],
    [['eval', 'knn', good, '--checkpoint', ckptOf(damaged('x4', () => {}), 3)], /^moco3: --checkpoint .*\/x4\/checkpoints\/step-0000003: not a checkpoint of .*\/good \(.*\/good\/checkpoints holds step-0, step-3, step-6, step-8\)$/],
    // last.json is no checkpoint: said as such (it offered the newest checkpoint as a "previous" one)
    [['eval', 'knn', good, '--checkpoint', join(good, 'checkpoints', 'last.json')], /^moco3: --checkpoint \S+\/good\/checkpoints\/last\.json: not a checkpoint folder \(step-N\) \(\S+\/good\/checkpoints holds step-0, step-3, step-6, step-8\)$/],
    // another run's checkpoint copied into this run's checkpoints/: its config hash is not the run's
    [
      ['eval', 'knn', damaged('x9', (r) => {
        const st = join(r, 'checkpoints', 'step-0000003', 'state.json');
        const state = JSON.parse(readFileSync(st, 'utf8'));
        writeFileSync(st, JSON.stringify({ ...state, config_hash: 'deadbeef', config: { ...state.config, seed: 5 } }));
      }), '--checkpoint', '3'],
      /^moco3: \S+\/x9\/checkpoints\/step-0000003\/state\.json: a checkpoint of another run \(config deadbeef, this run's [0-9a-f]{8}; its config -> this run's: seed 5 -> 0\): evaluate it in its own run folder$/,
    ],
    // eval of a run that lost its config.yaml: said as such, not "not a run folder"
    [['eval', 'knn', damaged('x7', (r) => rmSync(join(r, 'config.yaml')))], /^moco3: \S+\/x7\/config\.yaml: missing: put the run's config back \(each checkpoint's state\.json keeps it\)$/],
    // a completed run's damaged summary.json: said, not taken for a finished run's (train --resume said "already completed")
    [['train', ...TINY, '--resume', '--out', damaged('x6', (r) => truncateSync(join(r, 'summary.json'), 20))], /x6\/summary\.json: .*remove it \(`moco3 train --resume` or the sweep writes it again\)/],
    // what commander took without a word: the first of two values, the last of a switch and its --no- form,
    // an option as the value after '='
    [['train', ...TINY, '--seed', '1', '--seed', '2', '--out', fresh('tw1')], /^moco3: --seed given 2 times \(1, 2\): give it once\n/],
    [['train', '-c', file('a.yaml', 'seed: 1\n'), '--config', file('b.yaml', 'seed: 2\n'), '--dry-run'], /^moco3: --config given 2 times \(\S+a\.yaml, \S+b\.yaml\): give it once\n/],
    [['eval', 'linear', good, '--augment', '--no-augment'], /^moco3: --augment and --no-augment given together: give one of them\n/],
    [['train', ...TINY, '--out=--dry-run'], /^moco3: --out: expected a value, got the option --dry-run \(the value left out\?\)\n/],
    // short options as commander reads them: a group of switches ending in one that takes the next word, one
    // with its value in the same word
    [['train', ...TINY, '-qo', '--dry-run'], /^moco3: -o: expected a value, got the option --dry-run \(the value left out\?\)\n/],
    [['train', '-psmoke', '-p', 'cpu', '--dry-run'], /^moco3: --preset given 2 times \(smoke, cpu\): give it once\n/],
    [['train', '-psmoke', '-o=--dry-run'], /^moco3: -o=--dry-run: a short option takes its value without '=' \(-o --dry-run, or --out=--dry-run\)\n/],
    [['plan', tinySweep, '--backend', 'cpu', '--set', 'train.backend=wasm'], /^moco3: --backend cpu: --set train\.backend=wasm sets train\.backend too; give one of them$/],
    [['bench', '--preset', 'smoke', '--backend', 'all', '--set', 'train.backend=cpu', '--steps', '1'], /^moco3: --backend all: --set train\.backend=cpu sets train\.backend too; give one of them$/],
    // a flag and a --set of one key: the --set would win without a word
    [['train', ...TINY, '--seed', '1', '--set', 'seed=2', '--out', fresh('tw2')], /^moco3: --seed 1: --set seed=2 sets seed too; give one of them$/],
    [['train', ...TINY, '--data', 'synthetic', '--set', 'data.name=cifar10', '--out', fresh('tw3')], /^moco3: --data synthetic: --set data\.name=cifar10 sets data\.name too; give one of them$/],
    // a key every object inherits (toString) is no key of the file's: the line names the --set that is wrong
    [['train', ...TINY, '-c', file('inherit.yaml', 'optim:\n  toString: 1\n'), '--set', 'optim.base_lr=1', '--dry-run'], /^moco3: \S+inherit\.yaml: unknown key optim\.toString/],
    [['train', ...TINY, '-c', file('dotted.yaml', 'optim.base_lr: 1.0e-3\n'), '--dry-run'], /^moco3: \S+dotted\.yaml: optim\.base_lr: a dotted key \(as --set and sweep files write them\); in a config file nest it: optim: \{base_lr: \.\.\.\}$/],
    [['train', ...TINY, '--set', 'optim.base_lr=-.inf', '--dry-run'], /^moco3: --set optim\.base_lr=-\.inf: optim\.base_lr: expected number, got -Infinity$/],
    [['plan', file('inf.yaml', 'name: inf\npreset: smoke\nparameters:\n  optim.base_lr: {values: [.inf, -.inf]}\n')], /^moco3: \S+inf\.yaml: parameters\.optim\.base_lr: expected number, got Infinity$/],
    [['plan', join(dir, 'files')], /^moco3: \S+files: is a folder, not a sweep file$/],
    // a sweep file that is there but cannot be read is not "not found" (as root, an I/O error stands in for permissions)
    [['plan', '/proc/self/mem'], /^moco3: \/proc\/self\/mem: cannot be read \(EIO\)$/],
  ];
  for (const [args, re] of expect) {
    const r = await cli(args);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err.trim(), re);
  }
  // a note of a move killed before its folder was made: nothing moved, but the run reads interrupted until the
  // next train removes the note (an evaluation would be filed as of an interrupted run): said as such
  const noted = await cli(['eval', 'knn', damaged('x15', (r) => writeFileSync(join(r, '.aside.json'), JSON.stringify({ to: `${basename(r)}.old-20260101T000000` })))]);
  assert.equal(noted.code, 2, noted.err);
  assert.match(noted.err.trim(), /x15: holds the note of a `train --force` stopped before it moved anything \(\.aside\.json\); the next `moco3 train` or `moco3 sweep` of this run removes it: evaluate after that$/);
  // a torn last metrics line (a killed run) is read past, and said
  const results = join(dir, 'rep2');
  // (in a sweep's folder: results/train, where moco3 train puts its runs, is no sweep)
  const torn = join(results, 'sweep', 'run');
  mkdirSync(join(results, 'sweep'), { recursive: true });
  cpSync(good, torn, { recursive: true });
  writeFileSync(join(torn, 'metrics.jsonl'), `${readFileSync(join(torn, 'metrics.jsonl'), 'utf8')}{"step": 9, "lo`);
  const rep = await cli(['report', '--results', results]);
  assert.equal(rep.code, 0, rep.err);
  assert.match(rep.err, /metrics\.jsonl: its last line is torn \(a run killed while writing it\); ignored/);
  // --force starts a run with a damaged status.json again
  const forced = damaged('x5', (r) => writeFileSync(join(r, 'status.json'), '{'));
  const f = await cli(['train', ...TINY, '--force', '--set', 'optim.epochs=1', '--set', 'optim.warmup_epochs=0', '--out', forced]);
  assert.equal(f.code, 0, f.err);
  // the offer works: resuming from step 6 trains steps 7 and 8 again
  const run = damaged('x4', (r) => writeFileSync(join(ckptOf(r), 'state.json'), '{'));
  const r = await cli(['train', ...TINY, '--resume', '--checkpoint', 'step-6', '--out', run]);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(readFileSync(join(run, 'status.json'), 'utf8')).status, 'completed');
  assert.equal(JSON.parse(readFileSync(join(run, 'checkpoints', 'last.json'), 'utf8')).step, 8);
  const steps = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
  assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b), 'metrics rows once per step, in order');
  assert.equal(steps.at(-1), 8);
});

test('help asked for anywhere on the line, alone or in a group of short switches, is help, whatever else the line holds (exit 0); an unknown command or option says where the known ones are listed', async () => {
  for (const args of [['train', '--seed', '1', '--seed', '2', '--help'], ['train', '-qh', '--seed', '1', '--seed', '2']]) {
    const r = await cliOut(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    assert.match(r.out, /^Usage: moco3 train /, args.join(' '));
  }
  // what commander refused, as one line, and where the right word is listed
  const unknown: [string[], string][] = [
    [['trian'], "moco3: unknown command 'trian' (did you mean train?)\n(moco3 --help lists the commands)\n"],
    [['train', '--sed', '1'], "moco3 train: unknown option '--sed' (did you mean one of --seed, --set?)\n(moco3 train --help lists the options)\n"],
  ];
  for (const [args, err] of unknown) assert.deepEqual(await cliOut(args), { code: 2, out: '', err });
});

const rows = (run: string) => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => {
  const { images_per_s: _ips, ...row } = JSON.parse(l);
  return row;
});

test('a sweep refuses a damaged checkpoint of a run to resume in one line whose command resumes the run; the sweep then finishes as if never damaged', async () => {
  const y1 = damagedSweep('y1', (_r1, r2) => {
    for (const s of [0, 3, 4]) rmSync(join(ckptOf(r2, s), 'optimizer.safetensors'));
  });
  const noOlder = await cli(y1);
  assert.equal(noOlder.code, 2, noOlder.err);
  assert.match(noOlder.err.trim(), /step-0000004\/optimizer\.safetensors: missing; no older complete checkpoint: move the run folder out of \S+\/tiny, then run the sweep again \(it trains the run from the start\)$/);

  // the run folder moved out, the same sweep trains that run from the start and resumes the other
  const run2 = join(y1.at(-1)!, 'tiny', sweepRuns[1]!);
  renameSync(run2, join(dir, 'moved-out'));
  const moved = await cli(y1);
  assert.equal(moved.code, 0, moved.err);
  for (const id of sweepRuns) assert.deepEqual(rows(join(y1.at(-1)!, 'tiny', id)), rows(join(sweepGood, 'tiny', id)), `${id}: metrics differ`);

  const argv = damagedSweep('y2', (r1) => truncateSync(join(ckptOf(r1), 'state.json'), 30));
  const r = await cli(argv);
  assert.equal(r.code, 2, r.err);
  const line = r.err.trim();
  assert.equal(line.split('\n').length, 1, line);
  const m = /^moco3: (\S+\/step-0000008\/state\.json): state is not valid JSON \(truncated\?\); resume the run from the previous checkpoint with `moco3 ([^`]+)` \(the later steps are trained again\) or move the run folder out of \S+\/tiny to train it from the start; then run the sweep again$/.exec(line);
  assert.ok(m, line);
  const [, file, command] = m as unknown as [string, string, string];
  const run1 = join(argv.at(-1)!, 'tiny', sweepRuns[0]!);
  assert.equal(file, join(ckptOf(run1), 'state.json'));
  assert.match(command, / --resume --checkpoint step-6$/);
  // a submission to Slurm stops on it with the same line, before writing anything (its task would stop on the cluster)
  const bin = join(dir, 'bin-sbatch');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho 77\n', { mode: 0o755 });
  const sub = await cliOut([...argv, '--launcher', 'slurm'], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(sub.code, 2, sub.err);
  assert.equal(sub.err.trim(), line);
  assert.equal(existsSync(join(argv.at(-1)!, 'tiny', 'slurm')), false, 'the submission wrote its folder');
  // the offered command resumes the run from step 6; the sweep then finishes the other run
  const t = await cli([...command.split(' '), '-q']);
  assert.equal(t.code, 0, t.err);
  const again = await cli(argv);
  assert.equal(again.code, 0, again.err);
  for (const id of sweepRuns) {
    const run = join(argv.at(-1)!, 'tiny', id);
    assert.equal(JSON.parse(readFileSync(join(run, 'status.json'), 'utf8')).status, 'completed', id);
    assert.deepEqual(rows(run), rows(join(sweepGood, 'tiny', id)), `${id}: metrics differ from the undamaged sweep's`);
  }
});

test('plan and sweep say a damaged summary.json of a run in one line, exit 2 (they took it for a completed run)', async () => {
  const argv = damagedSweep('y4', (r1) => writeFileSync(join(r1, 'summary.json'), '{"status": "compl'));
  for (const cmd of ['plan', 'sweep']) {
    // plan takes the sweep's flags but for those that only shape how it runs
    const r = await cli([cmd, ...argv.slice(1).filter((a) => cmd === 'sweep' || !['-q', '--no-baselines', '--backend', 'cpu'].includes(a))]);
    assert.equal(r.code, 2, `${cmd}: ${r.err}`);
    assert.match(r.err.trim(), /^moco3: \S+\/summary\.json: .*remove it \(`moco3 train --resume` or the sweep writes it again\)/, cmd);
  }
});

test('plan says what the sweep will do with a damaged checkpoint (stop on it) and without last.json (resume from the newest)', async () => {
  const planOf = async (argv: string[]) => {
    const r = await cliOut(['plan', ...argv.slice(1).filter((a) => !['-q', '--no-baselines', '--backend', 'cpu'].includes(a))]);
    assert.equal(r.code, 0, r.err);
    return r.out;
  };
  const broken = await planOf(damagedSweep('y5', (r1) => truncateSync(join(ckptOf(r1), 'state.json'), 30)));
  assert.match(broken, /interrupted at step \d+\/\d+, its checkpoint damaged \(moco3 sweep stops on it and says how to resume it\)/);
  let newest = -1;
  const lost = await planOf(damagedSweep('y6', (r1) => {
    newest = JSON.parse(readFileSync(join(r1, 'checkpoints', 'last.json'), 'utf8')).step;
    rmSync(join(r1, 'checkpoints', 'last.json'));
  }));
  assert.match(lost, new RegExp(`interrupted at step \\d+/\\d+, resumes at ${newest}\\b`));
  // a failed run is trained again the same way: its row says where, or that its checkpoint stops the sweep
  const failed = (r1: string) => {
    const p = join(r1, 'status.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), status: 'failed', error: 'disk full' }));
  };
  const argv = damagedSweep('y7', (r1) => {
    failed(r1);
    truncateSync(join(ckptOf(r1), 'state.json'), 30);
  });
  assert.match(await planOf(argv), /failed at step \d+\/\d+ \(disk full\), its checkpoint damaged \(moco3 sweep stops on it and says how to resume it\)/);
  const json = await cliOut(['plan', ...argv.slice(1).filter((a) => !['-q', '--no-baselines', '--backend', 'cpu'].includes(a)), '--json']);
  const first = JSON.parse(json.out).runs[0];
  assert.deepEqual([first.status, first.resume_step], ['failed', null]);
  assert.match(first.resume_error, /state\.json: state is not valid JSON/);
  const resumable = await planOf(damagedSweep('y8', failed));
  assert.match(resumable, /failed at step (\d+)\/\d+ \(disk full\), resumes at \1\b/);
  // a run killed between heartbeats (status.json written every 10 steps): at the step of its last metrics row
  let reached = -1;
  const lagging = await planOf(damagedSweep('y9', (r1) => {
    const p = join(r1, 'status.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), step: 0 }));
    rmSync(join(r1, 'checkpoints'), { recursive: true });
    reached = JSON.parse(readFileSync(join(r1, 'metrics.jsonl'), 'utf8').trim().split('\n').at(-1)!).step;
  }));
  assert.ok(reached > 0);
  assert.match(lagging, new RegExp(`interrupted at step ${reached}/\\d+, restarts`));
  // sweeps named as a run's files (`checkpoints`, `metrics.jsonl`) in a results folder make it no run folder
  const shared = join(dir, 'named-sweeps');
  for (const name of ['checkpoints', 'metrics.jsonl', 'status.json']) mkdirSync(join(shared, name), { recursive: true });
  const ok = await cliOut(['plan', tinySweep, '--results', shared]);
  assert.equal(ok.code, 0, ok.err);
});

test('a sweep refuses a damaged metrics.jsonl of a run to resume before anything starts, as train does: one line, exit 2, the run untouched', async () => {
  let run1 = '';
  const argv = damagedSweep('y3', (r1) => {
    run1 = r1;
    const p = join(r1, 'metrics.jsonl');
    const lines = readFileSync(p, 'utf8').split('\n');
    lines[1] = 'garbage';
    writeFileSync(p, lines.join('\n'));
  });
  const before = readFileSync(join(run1, 'status.json'), 'utf8');
  const r = await cli(argv);
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.match(r.err.trim(), /^moco3: \S+\/metrics\.jsonl: line 2 is not a JSON object; remove the line/);
  assert.equal(readFileSync(join(run1, 'status.json'), 'utf8'), before, 'its status is not rewritten');
});

test('a run folder from before a key existed (its config.yaml lacks it) is the same run: done as it is, and evaluable', async () => {
  const run = damaged('older', (r) => {
    const p = join(r, 'config.yaml');
    const text = readFileSync(p, 'utf8');
    const older = text.replace(/^ *knn_every_epochs: .*\n/m, '').replace(/^ *train_views: .*\n/m, '');
    assert.notEqual(older, text);
    writeFileSync(p, older);
  });
  const again = await cli(['train', '--resume', '--out', run, '-q']);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /is already completed at step 8/);
  // with a config of its own that hashes the same, too; with another, the keys that differ
  const same = await cli(['train', ...TINY, '--out', run]);
  assert.equal(same.code, 0, same.err);
  const other = await cli(['train', ...TINY, '--set', 'optim.base_lr=0.5', '--out', run]);
  assert.equal(other.code, 2);
  assert.match(other.err, /holds a completed run of another config: optim\.base_lr 0\.0015 -> 0\.5;/);
  const e = await cli(['eval', 'knn', run, '--backend', 'cpu']);
  assert.equal(e.code, 0, e.err);
});

test("eval of a run whose config.yaml was edited since it trained (another test split size) says so before it evaluates", async () => {
  const run = damaged('edited', (r) => {
    const p = join(r, 'config.yaml');
    writeFileSync(p, readFileSync(p, 'utf8').replace(/^( *test_size:) 32$/m, '$1 16'));
  });
  assert.match(readFileSync(join(run, 'config.yaml'), 'utf8'), /test_size: 16/);
  const e = await cli(['eval', 'knn', run, '--backend', 'cpu']);
  assert.equal(e.code, 0, e.err);
  assert.match(e.err, /^moco3: note: \S+\/edited\/config\.yaml: not the config the run was trained with \(it hashes to [0-9a-f]{8}; meta\.json records [0-9a-f]{8}\): edited since\? it is read as it is now$/m);
  // as trained: no note
  const good2 = await cli(['eval', 'knn', damaged('as-trained', () => {}), '--backend', 'cpu']);
  assert.equal(good2.code, 0, good2.err);
  assert.doesNotMatch(good2.err, /not the config the run was trained with/);
  assert.doesNotMatch(good2.err, /evaluating its/);
});

test('eval of a run not finished says so and evaluates its newest checkpoint; a writer\'s temporary file is the run\'s own (--force would move it aside)', async () => {
  const stopped = damaged('stopped', asInterrupted);
  writeFileSync(join(stopped, '.status.json.tmp'), '');
  writeFileSync(join(stopped, 'meta.old-20260101T000000.json'), '{');
  const forced = await cli(['train', ...TINY, '--force', '--dry-run', '--out', stopped]);
  assert.equal(forced.code, 0, forced.err);
  const e = await cli(['eval', 'knn', stopped, '--backend', 'cpu']);
  assert.equal(e.code, 0, e.err);
  assert.match(e.err, /^moco3: note: \S+\/stopped is interrupted at step 8; evaluating its newest checkpoint$/m);
});

test("train --resume of a completed run: as it is, the run's own config said and nothing trained; --checkpoint step-N trains it again from N", async () => {
  const run = damaged('again-from', () => {});
  const noted = await cli(['train', '--resume', '--out', run]);
  assert.equal(noted.code, 0, noted.err);
  const at = run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(noted.err, new RegExp(`^moco3: --resume: the run's own config, ${at}/config\\.yaml\\nmoco3: ${at} is already completed at step 8 \\(use --force to train it again\\)\\n$`));
  const from6 = await cli(['train', '--resume', '--checkpoint', 'step-6', '--out', run, '-q']);
  assert.equal(from6.code, 0, from6.err);
  assert.doesNotMatch(from6.err, /already completed/);
  assert.equal(JSON.parse(readFileSync(join(run, 'meta.json'), 'utf8')).resumed_from_step, 6);
  assert.deepEqual(rows(run).map((r) => r.step).filter((s) => s > 6), [7, 8]);
});

test('eval of a path that is not there, or of a sweep\'s folder, train --resume, plan, sweep or baselines of a sweep\'s folder, or a sweep\'s folder as --results, say so in one line (not "no config.yaml"), exit 2, the sweep untouched', async () => {
  const missing = await cli(['eval', 'knn', join(dir, 'nope-run')]);
  assert.equal(missing.code, 2, missing.err);
  assert.match(missing.err.trim(), /^moco3: \S+\/nope-run: no such folder \(give a run folder: it holds config\.yaml and checkpoints\/\)$/);
  const sweep = join(sweepGood, 'tiny');
  const before = hashTree(sweep);
  const r = await cli(['eval', 'linear', sweep]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err.trim(), /^moco3: \S+\/tiny: a sweep's folder, not a run folder: give one of its runs \(\S+\/tiny\/<run-id>; moco3 plan lists them\)$/);
  // train --resume of a sweep's folder: said as eval says it (not "no run there", as for a mistyped folder)
  const t = await cli(['train', '--out', sweep, '--resume', '-q']);
  assert.equal(t.code, 2, t.err);
  assert.match(t.err.trim(), /^moco3: --resume --out \S+\/tiny: a sweep's folder, not a run folder: give one of its runs \(\S+\/tiny\/<run-id>; moco3 plan lists them\)$/);
  // a sweep's folder as the folder of sweeps: the sweep would plan a new folder inside it, all its runs new
  for (const cmd of ['plan', 'sweep', 'baselines']) {
    const p = await cli([cmd, tinySweep, '--results', sweep]);
    assert.equal(p.code, 2, p.err);
    assert.equal(p.err.trim(), `moco3: --results ${sweep}: a sweep's folder (it holds sweep.yaml), not the folder that holds sweeps: give the one that holds it (${sweepGood})`);
  }
  const rp = await cli(['report', '--results', sweep]);
  assert.equal(rp.code, 2, rp.err);
  assert.equal(rp.err.trim(), `moco3: --results ${sweep}: a sweep's folder, not the folder that holds sweeps: moco3 report ${sweep}`);
  // and the reverse: a sweep's results folder where its sweep goes names the sweep file it ran
  for (const cmd of ['plan', 'sweep', 'baselines']) {
    const p = await cli([cmd, sweep]);
    assert.equal(p.code, 2, p.err);
    assert.match(p.err.trim(), /^moco3: \S+\/tiny: a sweep's results folder, not a sweep file \(give its sweep, \S+\/fixtures\/tiny\.yaml, with the flags it ran with; moco3 report takes the folder\)$/);
  }
  assert.deepEqual(hashTree(sweep), before);
});
