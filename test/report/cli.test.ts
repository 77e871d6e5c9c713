import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { basename, join } from 'node:path';
import { cli } from '../helpers/cli.ts';
import { buildConfig, configHash, configToYaml } from '../../src/config/load.ts';
import { loadRunConfig } from '../../src/runfolder/records.ts';
import { formatSeconds } from '../../src/report/table.ts';
import { tmp, writeBatchSweep, writeFakeRun, writeSimpleSweep } from './fixtures.ts';

const fixtureCli = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'cli.ts');

test('moco3 report <sweep> --format csv writes the CSVs only; no argument reports every sweep', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const csv = await cli(['report', 'batch-size', '--results', root, '--format', 'csv']);
  assert.equal(csv.code, 0, csv.err);
  assert.ok(existsSync(join(dir, 'report.csv')));
  assert.ok(!existsSync(join(dir, 'report.md')));
  assert.ok(!existsSync(join(dir, 'plots')));
  assert.match(csv.out, /batch-size: 4 runs \(1 diverged\), swept optim\.batch_size, paper Fig\. 1/);

  const lr = writeSimpleSweep(root, 'lr', [1e-4, 2e-4].map((x) => ({ 'optim.base_lr': x })));
  const all = await cli(['report', '--results', root, '--no-png', '--dip', '5']);
  assert.equal(all.code, 0, all.err);
  for (const d of [dir, lr]) {
    assert.ok(existsSync(join(d, 'report.md')));
    assert.ok(existsSync(join(d, 'plots/knn.svg')));
    assert.ok(!existsSync(join(d, 'plots/knn.png')));
  }
  // the path of a sweep folder works as well as its name
  assert.equal((await cli(['report', dir, '--format', 'md', '--no-plots'])).code, 0);
});

test('moco3 report --dip-above-init: an early fall below the untrained encoder is no dip; the report says the rule', async () => {
  const root = tmp();
  // step 0 = 60; step 20 = 62 - 3 = 59, below it; step 40 = 64 - 8 = 56: 3 below the first evaluation
  const dir = join(root, 'early');
  writeFakeRun(dir, { id: 'run-s0', steps: 200, knnCurve: (f) => 60 + 20 * f, knnDrops: { 20: 3, 40: 8 } });
  const maxDip = () => {
    const [head, row] = readFileSync(join(dir, 'runs.csv'), 'utf8').trim().split('\n');
    return Number(row!.split(',')[head!.split(',').indexOf('max_dip')]);
  };
  assert.equal((await cli(['report', dir, '--no-plots'])).code, 0);
  assert.equal(maxDip(), 3);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /above step 0's kNN top-1/);
  const r = await cli(['report', dir, '--no-plots', '--dip-above-init']);
  assert.equal(r.code, 0, r.err);
  assert.equal(maxDip(), 0);
  assert.match(readFileSync(join(dir, 'report.md'), 'utf8'), /counted only where that maximum is above step 0's kNN top-1/);
});

test('moco3 report: bad input is one line and exit code 2', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const cases: string[][] = [
    ['report', 'nope', '--results', root],
    ['report', '--results', join(root, 'empty')],
    ['report', 'batch-size', '--results', root, '--dip', '-1'],
    ['report', 'batch-size', '--results', root, '--spike-window', '2.5'],
    ['report', 'batch-size', '--results', root, '--format', 'pdf'],
    ['report', join(dir, 'bs64-lr1.0e-4-adamw-learned-s0-abc000')],
  ];
  for (const args of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.ok(r.err.trim().length > 0 && r.err.trim().split('\n').length <= 2, r.err);
  }
  // --results that is not there, or is a file: said as such, naming the flag, not as a folder with no sweeps in it
  const missing = await cli(['report', '--results', join(root, 'nope')]);
  assert.equal(missing.code, 2, missing.err);
  assert.match(missing.err.trim(), /^moco3: --results \S+\/nope: no such folder \(moco3 sweep <sweep> --results \S+\/nope writes its sweeps there\)$/);
  writeFileSync(join(root, 'afile'), 'x');
  const file = await cli(['report', '--results', join(root, 'afile')]);
  assert.equal(file.code, 2, file.err);
  assert.match(file.err.trim(), /^moco3: --results \S+\/afile: is a file, not a folder: give the folder that holds sweeps$/);
  // a folder with no sweep in it (the runs of moco3 train alone): what makes one is said
  mkdirSync(join(root, 'none', 'train'), { recursive: true });
  const none = await cli(['report', '--results', join(root, 'none')]);
  assert.equal(none.code, 2, none.err);
  assert.match(none.err.trim(), /^moco3: no sweeps under \S+\/none \(a sweep is a folder of run folders, as moco3 sweep <sweep> writes; the runs of moco3 train are in none\)$/);
});

test('moco3 report <name>: a folder of that name that is not a sweep is passed over, never written into', async () => {
  const root = tmp();
  writeBatchSweep(join(root, 'results'), 'batch-size');
  const cwd = process.cwd();
  process.chdir(root);
  try {
    // ./batch-size holds a user's files, results/batch-size the sweep
    mkdirSync('batch-size');
    writeFileSync(join('batch-size', 'notes.txt'), 'mine');
    const r = await cli(['report', 'batch-size', '--no-plots']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(readdirSync('batch-size'), ['notes.txt']);
    assert.ok(existsSync(join('results', 'batch-size', 'report.md')));
    // a folder without a run is no sweep: exit 2, nothing written
    mkdirSync('empty');
    const e = await cli(['report', 'empty', '--no-plots']);
    assert.equal(e.code, 2);
    assert.equal(e.err, `moco3: no sweep 'empty' (looked for empty and ${join('results', 'empty')}; a sweep is a folder of run folders)\n`);
    assert.deepEqual(readdirSync('empty'), []);
  } finally {
    process.chdir(cwd);
  }
});

test('moco3 report with no sweep named: a damaged sweep stops it before any report is written; a cut gzip is named', async () => {
  const root = tmp();
  const good = writeBatchSweep(root, 'a-good');
  const bad = writeSimpleSweep(root, 'b-bad', [{ 'moco.temperature': 0.1 }]);
  const run = join(bad, readdirSync(bad)[0]!);
  const gz = gzipSync(readFileSync(join(run, 'metrics.jsonl')));
  rmSync(join(run, 'metrics.jsonl'));
  writeFileSync(join(run, 'metrics.jsonl.gz'), gz.subarray(0, gz.length >> 1));
  const r = await cli(['report', '--results', root, '--no-plots']);
  assert.equal(r.code, 2);
  assert.match(r.err, new RegExp(`^moco3: ${run}/metrics\\.jsonl\\.gz: not a whole gzip file \\(unexpected end of file\\); copy it again from where it came\\n$`));
  assert.ok(!existsSync(join(good, 'report.md')), 'nothing written');
});

test('moco3 report: a damaged baselines.json stops it before any file is written; a torn metrics line is noted once', async () => {
  const root = tmp();
  const good = writeBatchSweep(root, 'a-good');
  const bad = writeSimpleSweep(root, 'b-bad', [{ 'moco.temperature': 0.1 }]);
  writeFileSync(join(bad, 'baselines.json'), '{bad');
  const r = await cli(['report', '--results', root, '--no-plots']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^moco3: .*b-bad\/baselines\.json: not JSON/);
  assert.ok(!existsSync(join(good, 'report.md')) && !existsSync(join(good, 'report.csv')) && !existsSync(join(bad, 'runs.csv')), 'nothing written');
  rmSync(join(bad, 'baselines.json'));
  const run = join(bad, readdirSync(bad).find((d) => d.startsWith('0.1'))!);
  writeFileSync(join(run, 'metrics.jsonl'), `${readFileSync(join(run, 'metrics.jsonl'), 'utf8')}{"step": 9`);
  const torn = await cli(['report', 'b-bad', '--results', root, '--no-plots']);
  assert.equal(torn.code, 0, torn.err);
  assert.equal(torn.err.match(/its last line is torn/g)?.length, 1, torn.err);
});

test('moco3 report: a damaged sweep.yaml, a run folder that lost its config.yaml, or an output it cannot write: one line, exit 2, nothing written', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temps', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const runs = readdirSync(dir).sort().map((d) => join(dir, d));
  const snapshot = () => readdirSync(dir).sort().join(',') + runs.map((r) => readFileSync(join(r, 'summary.json'), 'utf8')).join('');
  const refused = async (re: RegExp, extra: string[] = []) => {
    const before = snapshot();
    const r = await cli(['report', dir, ...extra]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err.trim(), re);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.equal(snapshot(), before, 'nothing written');
  };
  // sweep.yaml: its planned runs name the missing ones; a damaged one was read as no sweep.yaml at all
  writeFileSync(join(dir, 'sweep.yaml'), 'name: temps\nruns: [\n');
  await refused(new RegExp(`^moco3: ${dir}/sweep\\.yaml: not valid YAML \\(truncated\\?\\); it is rewritten by \`moco3 sweep\``));
  writeFileSync(join(dir, 'sweep.yaml'), '- a list\n');
  await refused(/sweep\.yaml: expected a YAML mapping, got \["a list"\]/);
  rmSync(join(dir, 'sweep.yaml'));
  // a run whose config.yaml is gone was reported as not started
  const cfg = readFileSync(join(runs[0]!, 'config.yaml'));
  rmSync(join(runs[0]!, 'config.yaml'));
  await refused(new RegExp(`^moco3: ${runs[0]}: holds a run's status\\.json, metrics\\.jsonl, summary\\.json but no config\\.yaml; put it back`));
  // ... the work of a \`train --force\` killed while it moved the run aside: the command that puts it back
  writeFileSync(join(runs[0]!, '.aside.json'), '{"to": "x.old-20261205T000000"}');
  await refused(new RegExp(`^moco3: ${runs[0]}: a \`moco3 train --force\` on this run was killed while it moved the run's files aside; \`moco3 train --out ${runs[0]} --resume\` \\(or the sweep\\) puts them back$`));
  rmSync(join(runs[0]!, '.aside.json'));
  // ... killed before it had moved config.yaml: the folder it was moving to was named as one to move out,
  // which would lose the files the next train puts back
  writeFileSync(join(runs[0]!, 'config.yaml'), cfg);
  const aside = `${runs[0]}.old-20261205T000000`;
  mkdirSync(aside);
  renameSync(join(runs[0]!, 'status.json'), join(aside, 'status.json'));
  writeFileSync(join(runs[0]!, '.aside.json'), JSON.stringify({ to: basename(aside) }));
  await refused(new RegExp(`^moco3: ${runs[0]}: a \`moco3 train --force\` on this run was killed while it moved the run's files aside; \`moco3 train --out ${runs[0]} --resume\``));
  renameSync(join(aside, 'status.json'), join(runs[0]!, 'status.json'));
  rmSync(aside, { recursive: true });
  rmSync(join(runs[0]!, '.aside.json'));
  rmSync(join(runs[0]!, 'config.yaml'));
  // a damaged config.yaml is said as such, not as a folder that is no run's
  writeFileSync(join(runs[0]!, 'config.yaml'), 'model: [\n');
  await refused(new RegExp(`^moco3: ${runs[0]}/config\\.yaml: not a YAML mapping \\(damaged\\?\\): put the run's config back`));
  writeFileSync(join(runs[0]!, 'config.yaml'), cfg);
  // outputs that are folders (or a file where the plots go): refused before any summary.json is rewritten
  mkdirSync(join(dir, 'report.md'));
  await refused(new RegExp(`^moco3: ${dir}/report\\.md: is a folder, where the report writes its report\\.md: move it away$`));
  rmSync(join(dir, 'report.md'), { recursive: true });
  mkdirSync(join(dir, 'runs.csv'));
  await refused(/runs\.csv: is a folder/, ['--format', 'csv']);
  rmSync(join(dir, 'runs.csv'), { recursive: true });
  writeFileSync(join(dir, 'plots'), 'x');
  await refused(/plots: is a file, where the report puts its plots: move it away, or give --no-plots$/, ['--no-png']);
  const ok = await cli(['report', dir, '--no-plots']);
  assert.equal(ok.code, 0, ok.err);
  // a folder where a figure would be written is refused; where this report would only remove a figure
  // (--no-png, --no-plots), it is no figure, and stays
  rmSync(join(dir, 'plots'));
  mkdirSync(join(dir, 'plots', 'knn.png'), { recursive: true });
  await refused(new RegExp(`^moco3: ${dir}/plots/knn\\.png: is a folder, where the report writes its plots/knn\\.png: move it away$`));
  for (const flag of ['--no-plots', '--no-png']) {
    const r = await cli(['report', dir, flag]);
    assert.equal(r.code, 0, r.err);
    assert.ok(statSync(join(dir, 'plots', 'knn.png')).isDirectory(), flag);
  }
  rmSync(join(dir, 'plots'), { recursive: true });
});

test('moco3 baselines on data that cannot be read: the one line naming it, no progress line before it, nothing written', async () => {
  const results = tmp();
  const r = await cli(['baselines', 'batch-size', '--preset', 'smoke', '--results', results, '--data', `fashion-mnist:${join(results, 'none')}`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /^moco3: fashion-mnist: directory .*none not found/);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.deepEqual(readdirSync(results), []);
});

test("moco3 baselines of a folder swept under another preset says, before it computes, that these baselines are not its runs'", async () => {
  const results = tmp();
  const tiny = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'tiny.yaml');
  mkdirSync(join(results, 'tiny'));
  // the sweep.yaml a sweep under --preset cpu left (its runs planned there)
  writeFileSync(join(results, 'tiny', 'sweep.yaml'), 'name: tiny\nid: tiny\npreset: cpu\nruns:\n  - index: 1\n    id: bs32-cpu-run\n');
  const r = await cli(['baselines', tiny, '--backend', 'cpu', '--results', results, '--set', 'eval.linear.epochs=1', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.err,
    `moco3: note: ${join(results, 'tiny')} was planned under preset cpu; these baselines are for preset smoke, from which the report draws no verdict on runs of other data or another model: give --preset cpu (and the sweep's --set) for its runs\n`,
  );
  assert.ok(existsSync(join(results, 'tiny', 'baselines.json')));
});

test('moco3 baselines --json: one JSON line on stdout naming the file it wrote, no progress lines on stderr', async () => {
  const results = tmp();
  const tiny = join(import.meta.dirname, '..', 'sweep', 'fixtures', 'tiny.yaml');
  const r = await cli(['baselines', tiny, '--backend', 'cpu', '--results', results, '--set', 'eval.linear.epochs=1', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  const lines = r.out.trim().split('\n');
  assert.equal(lines.length, 1, r.out);
  const o = JSON.parse(lines[0]!) as { type: string; path: string };
  assert.deepEqual([o.type, o.path], ['baselines', join(results, 'tiny', 'baselines.json')]);
  assert.ok(existsSync(o.path));
  // the lock's folder stays once they are written (another process may be taking the lock)
  assert.ok(statSync(join(results, 'tiny', '.baselines')).isDirectory());
  // a damaged baselines.json: the one line naming it, before any work (no progress line), the file as it was
  const damaged = tmp();
  mkdirSync(join(damaged, 'tiny'));
  writeFileSync(join(damaged, 'tiny', 'baselines.json'), '{"dataset": "synth');
  const d = await cli(['baselines', tiny, '--backend', 'cpu', '--results', damaged]);
  assert.equal(d.code, 2);
  assert.match(d.err, /^moco3: \S+\/tiny\/baselines\.json: [^\n]*\n$/);
  assert.equal(readFileSync(join(damaged, 'tiny', 'baselines.json'), 'utf8'), '{"dataset": "synth');
  assert.deepEqual(readdirSync(join(damaged, 'tiny')), ['baselines.json']);
  // --results naming a file: named as the flag
  const file = join(damaged, 'afile');
  writeFileSync(file, 'x');
  const f = await cli(['baselines', tiny, '--backend', 'cpu', '--results', file]);
  assert.equal(f.code, 2);
  assert.equal(f.err, `moco3: --results ${file}: is a file, not a folder: give a folder path\n`);
});

test('moco3 report into a folder it cannot write in (its plots/, a run folder): one line naming it, exit 2, no file changed', () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  // a first report, then a run's figures changed: a second report would rewrite every file
  assert.equal(spawnSync(process.execPath, ['--import', 'tsx', fixtureCli, 'report', dir, '--no-png'], { encoding: 'utf8' }).status, 0);
  const run = readdirSync(dir).find((e) => existsSync(join(dir, e, 'summary.json')))!;
  const metrics = join(dir, run, 'metrics.jsonl');
  writeFileSync(metrics, readFileSync(metrics, 'utf8').replace(/"knn_top1":(\d+)/, '"knn_top1":1$1'));
  const files = () => {
    const out: Record<string, string> = {};
    const walk = (d: string) => {
      for (const e of readdirSync(d)) statSync(join(d, e)).isDirectory() ? walk(join(d, e)) : (out[join(d, e)] = readFileSync(join(d, e), 'utf8'));
    };
    walk(dir);
    return out;
  };
  chmodSync(root, 0o777);
  for (const d of [root, dir, ...readdirSync(dir).map((e) => join(dir, e))]) if (statSync(d).isDirectory()) chmodSync(d, 0o777);
  // as a user without write access (root writes anywhere: the command runs as nobody then)
  const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
  // plots/ read-only; a run folder read-only; plots/ not even searchable, where --no-plots would remove the
  // earlier report's figures (their names cannot be looked up there: they may be in it)
  for (const [locked, mode, flag, what] of [
    [join(dir, 'plots'), 0o555, '--no-png', ''],
    [join(dir, run), 0o555, '--no-png', ''],
    [join(dir, 'plots'), 0o644, '--no-plots', '; it would remove the figures of an earlier report there, which report.md will no longer show'],
  ] as const) {
    const before = files();
    chmodSync(locked, mode);
    try {
      const [cmd, ...args] = [...asUser, process.execPath, '--import', 'tsx', fixtureCli, 'report', dir, flag];
      const r = spawnSync(cmd!, args, { encoding: 'utf8', env: { ...process.env, HOME: root } });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, `moco3: ${locked}: the report cannot write there (no write access)${what}, and writes nothing until it can: give write access, or copy the sweep folder somewhere writable\n`);
      chmodSync(locked, 0o777);
      assert.deepEqual(files(), before, 'no file changed');
    } finally {
      chmodSync(locked, 0o777);
    }
  }
});

test('moco3 report on a full or failing disk: one line naming the file, exit 1 (no fault of the input), as a denied folder is exit 2', () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const report = (error: string) => spawnSync(process.execPath, ['--import', 'tsx', fixtureCli, 'report', dir, '--no-plots'], { encoding: 'utf8', env: { ...process.env, MOCO3_TEST_WRITE_ERROR: error } });
  for (const [code, call, exit, what] of [
    ['ENOSPC', 'write', 1, 'no space left on the disk'],
    ['EIO', 'fsync', 1, 'input/output error (a failing disk?)'],
    ['EACCES', 'open', 2, 'permission denied'],
  ] as const) {
    const r = report(`${code}:${call}:1:report.md`);
    assert.equal(r.status, exit, r.stderr);
    assert.equal(r.stderr, `moco3: ${join(dir, 'report.md')}: ${what} (${code} in ${call})\n`);
    assert.equal(existsSync(join(dir, 'report.md')), false);
  }
});

test('moco3 report says when a run\'s config.yaml is not the config it was trained with (edited since, by its hash in meta.json)', async () => {
  const root = tmp();
  const dir = writeSimpleSweep(root, 'temperature', [0.1, 0.2].map((t) => ({ 'moco.temperature': t })));
  const run = join(dir, readdirSync(dir).find((e) => existsSync(join(dir, e, 'config.yaml')))!);
  // a whole config, as a trained run's (the fixture's lists only the keys a report reads)
  writeFileSync(join(run, 'config.yaml'), configToYaml(buildConfig({ preset: 'smoke', sets: ['moco.temperature=0.1'] })));
  writeFileSync(join(run, 'meta.json'), JSON.stringify({ config_hash: configHash(loadRunConfig(run)) }));
  const quiet = await cli(['report', dir, '--no-plots']);
  assert.equal(quiet.code, 0, quiet.err);
  assert.doesNotMatch(quiet.err, /not the config the run was trained with/);
  const path = join(run, 'config.yaml');
  writeFileSync(path, readFileSync(path, 'utf8').replace(/temperature: 0\.1\b/, 'temperature: 0.3'));
  const edited = await cli(['report', dir, '--no-plots']);
  assert.equal(edited.code, 0, edited.err);
  assert.match(edited.err, new RegExp(`moco3: note: ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not the config the run was trained with \\(it hashes to [0-9a-f]{8}; meta\\.json records [0-9a-f]{8}\\): edited since\\? it is read as it is now\\n`));
});

test('moco3 report: figures it no longer draws go; a planned sweep has no table yet; an absolute path is looked for once; a spike factor at or below 1 and results/train are refused or passed over', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  assert.equal((await cli(['report', dir])).code, 0);
  for (const f of ['knn.svg', 'knn.png', 'grad.svg', 'grad.png']) assert.ok(existsSync(join(dir, 'plots', f)), f);
  // --no-png: the PNGs of the earlier report would be taken for this one's
  assert.equal((await cli(['report', dir, '--no-png'])).code, 0);
  assert.deepEqual(readdirSync(join(dir, 'plots')).sort(), ['grad.svg', 'knn.svg']);
  // --no-plots: report.md links none, and an earlier report's would be taken for this one's; a file of the user's stays
  writeFileSync(join(dir, 'plots', 'mine.txt'), 'notes\n');
  assert.equal((await cli(['report', dir, '--no-plots'])).code, 0);
  assert.deepEqual(readdirSync(join(dir, 'plots')), ['mine.txt']);
  assert.doesNotMatch(readFileSync(join(dir, 'report.md'), 'utf8'), /plots\//);
  // --format csv leaves report.md, and with it the figures it links
  assert.equal((await cli(['report', dir])).code, 0);
  assert.equal((await cli(['report', dir, '--format', 'csv', '--no-plots'])).code, 0);
  assert.deepEqual(readdirSync(join(dir, 'plots')).sort(), ['grad.png', 'grad.svg', 'knn.png', 'knn.svg', 'mine.txt']);
  // a plots/ folder that held the figures alone goes with them: no empty folder left behind
  rmSync(join(dir, 'plots', 'mine.txt'));
  assert.equal((await cli(['report', dir, '--no-plots'])).code, 0);
  assert.ok(!existsSync(join(dir, 'plots')));
  // a wall-time std is written in its mean's unit (6.4 min ± 104 s before)
  assert.deepEqual(
    [formatSeconds(384), formatSeconds(104, 384), formatSeconds(6.1, 144), formatSeconds(0, 30), formatSeconds(30), formatSeconds(7.25), formatSeconds(9000), formatSeconds(900, 9000)],
    ['6.4 min', '1.7 min', '0.10 min', '0.0 s', '30 s', '7.3 s', '2.5 h', '0.25 h'],
  );

  // sweep.yaml alone (a sweep planned, none of its runs started): said, not an empty table
  const planned = join(root, 'planned');
  mkdirSync(planned);
  writeFileSync(join(planned, 'sweep.yaml'), readFileSync(join(dir, 'sweep.yaml')));
  assert.equal((await cli(['report', planned, '--no-plots'])).code, 0);
  const md = readFileSync(join(planned, 'report.md'), 'utf8');
  assert.match(md, /seeds none yet\./);
  assert.match(md, /## Table\n\nNo run of this sweep has results yet: the table comes with the first one\.\n/);
  assert.doesNotMatch(md, /\|---\|\|/);

  const nowhere = join(root, 'nowhere');
  assert.equal((await cli(['report', nowhere])).err, `moco3: no sweep '${nowhere}' (looked for ${nowhere}; a sweep is a folder of run folders)\n`);
  const weak = await cli(['report', dir, '--spike-factor', '1']);
  assert.equal(weak.code, 2);
  assert.equal(weak.err, 'moco3: --spike-factor 1: expected a number above 1 (a spike is a value above that many times its running median)\n');

  // results/train holds the runs of moco3 train, in no sweep: not reported, not written into
  const results = join(root, 'results');
  writeSimpleSweep(results, 'lr', [1e-4, 2e-4].map((x) => ({ 'optim.base_lr': x })));
  const train = writeSimpleSweep(results, 'train', [{ 'optim.base_lr': 1e-4 }]);
  rmSync(join(train, 'sweep.yaml'), { force: true });
  const all = await cli(['report', '--results', results, '--no-plots']);
  assert.equal(all.code, 0, all.err);
  assert.match(all.out, /^lr: /);
  assert.doesNotMatch(all.out, /^train: /m);
  assert.ok(!existsSync(join(train, 'report.md')));
});

test('moco3 report: --dip, --spike-factor, --spike-window and --lead-max-lag are the rules report.md states (their defaults when not given); a value out of range is one line naming the flag, exit 2, nothing written', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const rules = () => {
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    return [/at least (\S+) points below its running maximum/, /infinity norm above (\S+)× /, /previous (\S+) logged values/, /lags up to ±(\S+) logged steps/].map((re) => md.match(re)?.[1]);
  };
  const def = await cli(['report', dir, '--no-plots']);
  assert.equal(def.code, 0, def.err);
  // README's defaults: a dip of 2.5 points, a spike at 4x the median of the previous 20 values, lags up to 40
  assert.deepEqual(rules(), ['2.5', '4', '20', '40']);
  // the csv comes with the markdown unless --format says otherwise
  assert.ok(existsSync(join(dir, 'report.csv')));
  const given = await cli(['report', dir, '--no-plots', '--dip', '0.5', '--spike-factor', '1.5', '--spike-window', '1', '--lead-max-lag', '7']);
  assert.equal(given.code, 0, given.err);
  assert.deepEqual(rules(), ['0.5', '1.5', '1', '7']);
  rmSync(join(dir, 'report.md'));
  rmSync(join(dir, 'report.csv'));
  for (const [flag, v, what] of [
    ['--dip', '0', 'a positive number'],
    ['--dip', '', 'a positive number'],
    ['--spike-window', '0', 'a positive integer'],
    ['--spike-window', '2.5', 'a positive integer'],
    ['--lead-max-lag', '0', 'a positive integer'],
    ['--lead-max-lag', '1.5', 'a positive integer'],
  ] as const) {
    const r = await cli(['report', dir, '--no-plots', flag, v]);
    assert.equal(r.code, 2, `${flag} ${v}: ${r.err}`);
    assert.equal(r.err, `moco3: ${flag} ${v === '' ? "''" : v}: expected ${what}\n`);
    assert.equal(r.out, '');
    assert.ok(!existsSync(join(dir, 'report.md')) && !existsSync(join(dir, 'report.csv')), `${flag} ${v}: nothing written`);
  }
});

test('moco3 report: its line per sweep counts the runs, the diverged and the figures drawn', async () => {
  const root = tmp();
  const dir = writeBatchSweep(root, 'batch-size');
  const r = await cli(['report', dir]);
  assert.equal(r.code, 0, r.err);
  // 4 runs, the batch of 384 diverged; knn and grad drawn (an SVG each, with its PNG)
  assert.match(r.out, new RegExp(`^batch-size: 4 runs \\(1 diverged\\), swept optim\\.batch_size, paper Fig\\. 1; ${join(dir, 'report.md')}, ${join(dir, 'report.csv')}, 2 plots in \\d+\\.\\d\\d s\\n$`));
  // one run is one run
  const one = join(root, 'one');
  writeFakeRun(one, { id: 'r' });
  const o = await cli(['report', one, '--no-plots']);
  assert.equal(o.code, 0, o.err);
  assert.match(o.out, /^one: 1 run \(0 diverged\), swept -; /);
});
