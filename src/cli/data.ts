/** `moco3 data fetch|info|preview`: get a dataset into the data directory, describe one, or look at its training views. */
import { Command } from 'commander';
import { intFlag } from './numbers.ts';
import cliProgress from 'cli-progress';
import { barOptions, barsOn, barSize } from './progress.ts';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { DATASET_NAMES as CONFIG_DATASETS, DEFAULTS, MAX_IMAGE_SIZE } from '../config/schema.ts';
import { PRESETS } from '../config/presets.ts';
import { CIFAR, DATA_DIR, cifarCandidates, cifarFound } from '../data/cifar.ts';
import { checkFile, isFetchable, SOURCES, FETCHABLE, type FileCheck } from '../data/checksums.ts';
import { fetchDataset, FetchInterrupted, mb, type ProgressHandle } from '../data/fetch.ts';
import { FASHION_MNIST_DIR, FASHION_MNIST_FETCHED, FILES as FASHION_MNIST_FILES, fashionMnistDefaultDir, fashionMnistFile, fashionMnistFound } from '../data/fashion_mnist.ts';
import { IMAGEFOLDER_SUBDIR } from '../data/imagefolder.ts';
import { gatherBatch } from '../data/sampler.ts';
import { ChannelStats } from '../data/stats.ts';
import { SYNTHETIC_DEFAULTS } from '../data/synthetic.ts';
import { DataError, type DataSpec, type Dataset } from '../data/types.ts';
import { configFromFlags, nonEmptyName, nonEmptyPath } from './common.ts';
import { UsageError } from '../config/errors.ts';
import { checkOutputDir, shellQuote } from '../engine/files.ts';
import { shown } from './env.ts';
import { onStopSignals } from './supervise.ts';
import { jsonLine } from '../runfolder/metrics.ts';

/**
 * A dataset loaded for `moco3 data ...`, whose flag for a dataset's folder is `--data-path PATH`: the
 * loaders' errors name train's `--data NAME:PATH`, said here as this command takes it.
 */
async function inDataCommand<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (e instanceof DataError) e.message = e.message.replace(/--data [\w-]+:PATH/g, '--data-path PATH');
    throw e;
  }
}

/** Names `--data` accepts; `loadDataset` says itself which of them it cannot load (yet). */
const KNOWN: readonly string[] = CONFIG_DATASETS;


/** A bar per download on a terminal, a few plain lines otherwise. */
function progressFactory(): (file: string) => ProgressHandle {
  const out = process.stderr;
  if (barsOn(out)) {
    return (file) => {
      const bar = new cliProgress.SingleBar(
        {
          ...barOptions(out),
          format: `${file} |{bar}| {percentage}% | {done}/{size} | {speed} MB/s | ETA {eta_formatted}`,
          barsize: barSize(out),
          etaBuffer: 200,
        },
        cliProgress.Presets.shades_classic,
      );
      let t0 = 0;
      let first = 0;
      let running = false;
      return {
        start(total, from) {
          t0 = performance.now();
          first = from;
          bar.start(total, from, { done: mb(from), size: mb(total), speed: '-' });
          running = true;
        },
        update(done) {
          const s = (performance.now() - t0) / 1000;
          bar.update(done, { done: mb(done), speed: s > 0.5 ? ((done - first) / 1e6 / s).toFixed(1) : '-' });
        },
        stop() {
          if (running) bar.stop();
          running = false;
        },
      };
    };
  }
  return (file) => {
    let total = 0;
    let next = 0;
    let t0 = 0;
    return {
      start(t, from) {
        total = t;
        t0 = performance.now();
        next = Math.floor((from / total) * 4 + 1) / 4;
      },
      update(done) {
        if (total > 0 && done / total >= next && next <= 1) {
          const s = (performance.now() - t0) / 1000;
          out.write(`${file}: ${Math.round((done / total) * 100)}% (${mb(done)} of ${mb(total)}, ${s.toFixed(0)} s)\n`);
          while (next <= done / total) next += 0.25;
        }
      },
      stop() {},
    };
  };
}

interface FetchFlags {
  dir?: string;
  mirror?: string;
}

function fetchCmd(): Command {
  return new Command('fetch')
    .description(`download a dataset (${FETCHABLE.join(', ')}) into the data directory, checking every file's SHA-256`)
    .argument('<dataset>', FETCHABLE.join(' | '))
    .option('--dir <dir>', `data directory (default: $MOCO3_DATA or ~/.moco3/data, now ${DATA_DIR})`, nonEmptyPath)
    .option('--mirror <url>', "base URL to download from instead of the dataset's home (or $MOCO3_MIRROR); the file name is appended")
    .action(async (name: string, f: FetchFlags) => {
      if (!isFetchable(name)) {
        const why = KNOWN.includes(name) ? `nothing to download for '${name}'` : `unknown dataset '${name}'`;
        throw new UsageError(`data fetch ${name}: ${why} (fetchable: ${FETCHABLE.join(', ')})`);
      }
      const source = SOURCES[name];
      const dir = resolve(f.dir ?? DATA_DIR);
      // a file where the folder goes, or where its dataset's folder in it goes: said before a byte is downloaded
      // (it was said after the download). Not whether it may be written: a complete copy in a read-only folder
      // (the system's) is checked, not written
      checkOutputDir(join(dir, source.subdir), dataDirLabel(f.dir), dir, { access: false });
      // set but empty, as every other variable: unset
      const mirror = f.mirror ?? (process.env.MOCO3_MIRROR?.trim() ? process.env.MOCO3_MIRROR : null);
      // a space or control character (a carriage return from a Windows-edited script) would go into every URL;
      // one without a host (`http://`: the file's name became the host) or with a port past 65535 fails there too;
      // a query or fragment would take the file's name (`…/x?y=1/file`)
      if (mirror !== null) {
        const scheme = /^https?:\/\//.test(mirror);
        const blank = /[\s\u0000-\u001f\u007f]/.test(mirror);
        const query = /[?#]/.test(mirror);
        let host = false;
        try {
          host = new URL(mirror).hostname !== '';
        } catch {
          /* no URL */
        }
        if (!scheme || blank || !host || query) {
          const why = !scheme ? '' : blank ? ' without spaces or control characters' : !host ? ' with a host (and a port up to 65535)' : ' without a query or fragment (? or #): the file names are added to its path';
          throw new UsageError(`${f.mirror !== undefined ? '--mirror' : '$MOCO3_MIRROR'} ${mirror === '' ? "''" : shown(mirror)}: expected an http:// or https:// URL${why}`);
        }
      }
      const ac = new AbortController();
      let stopping = false;
      // Ctrl-C, `kill` and a closed terminal alike: the download stops, its .part kept to resume from
      const onSig = () => {
        if (stopping) process.exit(130);
        stopping = true;
        ac.abort();
      };
      const offSignals = onStopSignals(onSig);
      try {
        const r = await fetchDataset(source, {
          dir,
          mirror,
          signal: ac.signal,
          log: (line) => process.stderr.write(`${line}\n`),
          progress: progressFactory(),
        });
        const where = r.extracted ? r.extracted.path : r.dir;
        if (name === 'fashion-mnist' && r.dataFlag !== '--data fashion-mnist' && existsSync(FASHION_MNIST_DIR)) {
          process.stderr.write(`note: ${FASHION_MNIST_DIR} holds Fashion-MNIST too; plain --data fashion-mnist reads that copy\n`);
        }
        process.stdout.write(`${name}: ready in ${where} (${r.files.length} file${r.files.length === 1 ? '' : 's'}, checksums ok)\n`);
        process.stdout.write(`use: moco3 train ${r.dataFlag}\n`);
      } catch (e) {
        if (e instanceof FetchInterrupted) {
          process.stderr.write(`\nmoco3: ${e.message}; run the same command again to resume\n`);
          process.exitCode = 130;
          return;
        }
        throw e;
      } finally {
        offSignals();
      }
    });
}

interface InfoFlags {
  dataPath?: string;
  imageSize?: string;
  dir?: string;
  json?: boolean;
}

/** The data directory as a message names it: the flag, the variable that set it, or the default's path. */
function dataDirLabel(dir: string | undefined): string {
  return dir !== undefined ? `--dir ${dir}` : process.env.MOCO3_DATA?.trim() ? `$MOCO3_DATA ${resolve(DATA_DIR)}` : `the data directory ${resolve(DATA_DIR)}`;
}

/** Where a reader looks, whether anything is there, and the fetch command that would put it there. */
function lookup(name: string, path: string | null, f: InfoFlags): { looked: string[]; present: boolean; hint: string } {
  const fetchIn = (dir: string | null) => `moco3 data fetch ${name}${dir ? ` --dir ${shellQuote(dir)}` : ''}`;
  if (name === 'fashion-mnist') {
    const dir = path ?? fashionMnistDefaultDir();
    // some of the four files there: the reader names the one missing (a folder of none is no data)
    const present = fashionMnistFound(dir) !== null || Object.values(FASHION_MNIST_FILES).some((base) => fashionMnistFile(dir, base) !== null);
    // fetch puts it in <dir>/fashion-mnist
    // a folder of another name than fetch's: fetch cannot fill it; say where fetch would put the files
    const own = f.dir !== undefined || !path || basename(resolve(path)) === 'fashion-mnist';
    let hint = own
      ? `get it with: ${fetchIn(f.dir ?? (path ? dirname(resolve(path)) : null))}`
      : `put the four files in ${resolve(path!)}, or get them with: ${fetchIn('DIR')} (into DIR/fashion-mnist) and give that folder`;
    if (!path) hint = `${hint}, or apt-get install dataset-fashion-mnist`;
    return { looked: path ? [dir] : [FASHION_MNIST_DIR, FASHION_MNIST_FETCHED], present, hint };
  }
  if (name === 'cifar10' || name === 'cifar100') {
    const kind = CIFAR[name];
    const base = path ?? DATA_DIR;
    const cands = cifarCandidates(kind, path);
    const present = cifarFound(kind, path) !== null;
    const looked = cands.length === 1 ? cands : [`${join(base, kind.folder)}/`, join(base, kind.archive)];
    // the data folder fetch fills: the path given, or the folder of the archive or of a file it names
    // (test_batch.bin), and the folder above the unpacked folder
    let fill = path === null ? null : resolve(path);
    if (fill !== null && (fill.endsWith('.tar.gz') || fill.endsWith('.bin') || (existsSync(fill) && !statSync(fill).isDirectory()))) fill = dirname(fill);
    if (fill !== null && basename(fill) === kind.folder) fill = dirname(fill);
    const hint = `get it with: ${fetchIn(fill)}`;
    return { looked, present, hint };
  }
  return { looked: [], present: true, hint: '' };
}

async function checks(ds: Dataset): Promise<{ files: FileCheck[]; notes: string[] }> {
  const files: FileCheck[] = [];
  const notes: string[] = [];
  if (ds.name === 'fashion-mnist') {
    for (const k of SOURCES['fashion-mnist'].files) {
      const p = fashionMnistFile(ds.source, k.name.replace(/\.gz$/, ''));
      files.push(p ? await checkFile(p, k) : { path: join(ds.source, k.name), known: k.name, status: 'missing' });
    }
  } else if (ds.name === 'cifar10' || ds.name === 'cifar100') {
    const kind = CIFAR[ds.name];
    const k = SOURCES[ds.name].files[0]!;
    // the archive the reader read (a .tar.gz, or a gzip file of another name: cifar10.tgz), or the one beside the folder it read
    const read = statSync(ds.source).isFile();
    const archive = read ? ds.source : join(basename(ds.source) === kind.folder ? dirname(ds.source) : ds.source, kind.archive);
    files.push(await checkFile(archive, k));
    if (!read) {
      for (const f of [...kind.train, ...kind.test]) files.push({ path: join(ds.source, f), known: null, status: 'not checked' });
      notes.push(`the extracted .bin files have no published checksums; the archive has`);
    }
  } else if (ds.source === 'built-in') {
    const smoke = PRESETS.smoke.config.data;
    // the images shown are the generator's own size; a run makes them at data.image_size (default 224)
    const px = SYNTHETIC_DEFAULTS.imageSize;
    notes.push(
      `built in: no files; shown here at ${px}x${px}; a run generates them at the sizes data.train_size, data.test_size and data.image_size give: ` +
        `train ${SYNTHETIC_DEFAULTS.trainSize} and test ${SYNTHETIC_DEFAULTS.testSize} when those are null (their default), ` +
        `at data.image_size (default ${DEFAULTS.data.image_size}); the smoke preset's: train ${smoke?.train_size}, test ${smoke?.test_size}, ${smoke?.image_size}x${smoke?.image_size}`,
    );
  } else {
    notes.push(`no published checksums for ${ds.name}`);
  }
  return { files, notes };
}

/** Mean and std of the train pixels per channel, on the [0,1] scale (of at most 2000 images spread over the split when it is streamed from disk). */
function measured(ds: Dataset): { mean: number[]; std: number[]; images: number } {
  const split = ds.train;
  const stats = new ChannelStats(split.channels);
  const count = split.read ? Math.min(split.n, 2000) : split.n;
  stats.add(split.read ? gatherBatch(split, Array.from({ length: count }, (_, i) => Math.floor((i * split.n) / count))).data : split.images);
  return { ...stats.result(), images: count };
}

function abbreviate(names: string[]): string {
  if (names.length <= 12) return names.join(', ');
  return `${names.slice(0, 5).join(', ')}, ... , ${names.slice(-2).join(', ')}`;
}

const fix = (xs: readonly number[], d = 4) => xs.map((x) => x.toFixed(d)).join(' ');

function describeCheck(c: FileCheck): string {
  const short = (h: string) => h.slice(0, 16);
  switch (c.status) {
    case 'ok':
      return `ok${c.note ? ` (${c.note})` : ''}`;
    case 'mismatch':
      return `MISMATCH: expected ${c.expected?.size} bytes sha256 ${short(c.expected?.sha256 ?? '')}..., got ${c.got?.size} bytes sha256 ${short(c.got?.sha256 ?? '')}...`;
    case 'missing':
      return 'missing';
    default:
      return 'not checked';
  }
}

function infoCmd(): Command {
  return new Command('info')
    .description('describe a dataset: images per split, classes, size, mean/std, where it is, and the checksums of its files')
    .argument('<dataset>', KNOWN.join(' | '))
    .option('--data-path <path>', 'where the dataset is (as in --data NAME:PATH)', nonEmptyPath)
    .option('--dir <dir>', 'a data directory, as `moco3 data fetch --dir` fills (imagefolder: its imagenet/ folder is read)', nonEmptyPath)
    .option('--image-size <S>', 'imagefolder: the training image size whose cache to read or build (as data.image_size)', '224')
    .option('--json', 'print one JSON object')
    .action(async (name: string, f: InfoFlags) => {
      if (!KNOWN.includes(name)) throw new UsageError(`data info ${name}: unknown dataset '${name}' (expected one of: ${KNOWN.join(', ')})`);
      if (f.dataPath && f.dir) throw new UsageError('data info: give --data-path or --dir, not both');
      if (name === 'synthetic' && (f.dataPath || f.dir)) throw new UsageError(`${f.dataPath ? '--data-path' : '--dir'}: the synthetic dataset is built in; it reads no path`);
      // bounded as data.image_size is
      const imageSize = intFlag('--image-size', f.imageSize ?? '224', 1, MAX_IMAGE_SIZE);
      // a file given for a folder: said as such, not "no data at" (for CIFAR, a file is its archive, or one of
      // its batches, whose folder the "no data" line tells fetch to fill)
      const given = f.dataPath ?? f.dir;
      if (given !== undefined && existsSync(given) && !statSync(given).isDirectory() && !(f.dataPath && (name === 'cifar10' || name === 'cifar100'))) {
        throw new UsageError(`${f.dataPath ? '--data-path' : '--dir'} ${given}: is a file, not a folder: give a folder path`);
      }
      let path: string | null = f.dataPath ? resolve(f.dataPath) : null;
      // the data directory's folder of the dataset, as the readers' default under $MOCO3_DATA
      if (f.dir) path = isFetchable(name) ? resolve(f.dir, SOURCES[name].subdir) : name === 'imagefolder' ? resolve(f.dir, IMAGEFOLDER_SUBDIR) : resolve(f.dir);
      const where = lookup(name, path, f);
      // a CIFAR --data-path that is a file and no archive of it: the reader says what it is (its lines name
      // the file, not paths below it)
      const readerSays = (name === 'cifar10' || name === 'cifar100') && path !== null && existsSync(path) && !statSync(path).isDirectory();
      if (!where.present && !readerSays) {
        // a file where a folder of the path goes ($MOCO3_DATA set to a file, a --data-path below a file): said so,
        // not a fetch command that fetch refuses (a CIFAR --data-path that is a file is the reader's to name)
        const looked = path ?? DATA_DIR;
        if (!(f.dataPath && existsSync(looked))) checkOutputDir(looked, f.dataPath !== undefined ? `--data-path ${f.dataPath}` : dataDirLabel(f.dir), f.dataPath ?? f.dir ?? DATA_DIR, { access: false });
        throw new DataError(`${name}: no data at ${where.looked.join(' or ')} (${where.hint})`);
      }
      const spec = { name, path, trainSize: null, testSize: null, seed: 0, imageSize } as unknown as DataSpec;
      // loaded here, not at start-up: the data index pulls in TensorFlow.js (augmentation) and sharp
      const { loadDataset } = await import('../data/index.ts');
      const ds = await inDataCommand(() => loadDataset(spec));
      const { files, notes } = await checks(ds);
      const m = measured(ds);
      const { height, width, channels } = ds.train;
      if (files.some((c) => c.status === 'mismatch')) {
        // where the data is (--dir, --data-path or the default): the same hint as for missing data
        const again = isFetchable(name) ? `; to download them again, ${lookup(name, path, f).hint.replace(/^get it with: /, '')}` : '';
        process.stderr.write(`moco3: ${ds.name}: some files do not match the published checksums${f.json ? '' : ' (see the checksums)'}${again}\n`);
        // damaged data is bad input, as missing data is: `moco3 data info X && moco3 train ...` stops here
        process.exitCode = 2;
      }
      if (f.json) {
        process.stdout.write(
          `${jsonLine({
            name: ds.name,
            source: ds.source,
            train: ds.train.n,
            test: ds.test.n,
            num_classes: ds.numClasses,
            class_names: ds.classNames,
            height,
            width,
            channels,
            mean: ds.mean,
            std: ds.std,
            measured_mean: m.mean,
            measured_std: m.std,
            files: files.map((c) => ({ path: c.path, known: c.known, status: c.status, how: c.how, note: c.note, expected: c.expected, got: c.got })),
            notes,
          })}\n`,
        );
        return;
      }
      const lines = [
        `${ds.name}: ${ds.source}`,
        `  images: train ${ds.train.n}, test ${ds.test.n}; ${height}x${width}, ${channels} channel${channels === 1 ? ' (used as 3 equal channels)' : 's'}`,
        `  classes (${ds.numClasses}): ${abbreviate(ds.classNames)}`,
        `  normalisation: mean ${fix(channels === 1 ? ds.mean.slice(0, 1) : ds.mean, 4)}, std ${fix(channels === 1 ? ds.std.slice(0, 1) : ds.std, 4)} (${m.images === 0 ? 'not measured: the train split holds no images' : `measured on ${m.images === ds.train.n ? 'train' : `${m.images} train images`}: mean ${fix(m.mean)}, std ${fix(m.std)}`})`,
      ];
      if (files.length) {
        lines.push('  checksums:');
        const w = Math.max(...files.map((c) => c.path.length));
        for (const c of files) lines.push(`    ${c.path.padEnd(w)}  ${describeCheck(c)}`);
      }
      for (const n of notes) lines.push(`  (${n})`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

interface PreviewFlags {
  dataPath?: string;
  preset?: string;
  set: string[];
  out: string;
  images: string;
  pairs: string;
  step: string;
  seed?: string;
}

/** The preset whose data a dataset name suggests, when none is given. */
const PRESET_FOR: Record<string, string> = { synthetic: 'smoke', 'fashion-mnist': 'cpu', cifar10: 'gpu', cifar100: 'gpu', imagefolder: 'paper' };


function previewCmd(): Command {
  return new Command('preview')
    .description('a PNG of training images and their two augmented views, as the training step computes them')
    .argument('[dataset]', `${KNOWN.join(' | ')} (default: the preset's)`)
    .option('--data-path <path>', 'where the dataset is (as in --data NAME:PATH)', nonEmptyPath)
    .option('-p, --preset <name>', "the run's preset: image size and augmentation settings (default: the dataset's usual one)", nonEmptyName)
    .option('-s, --set <key=value>', 'override a config key, as for train; repeatable', (v: string, prev: string[]) => [...prev, v], [])
    .option('-o, --out <file>', 'the PNG to write', nonEmptyPath, 'views.png')
    .option('--images <n>', 'images (rows)', '8')
    .option('--pairs <n>', '(view 1, view 2) pairs per image: the first is the step\'s, the others the next steps\'', '3')
    .option('--step <n>', 'the training step whose batch and views are shown', '0')
    .option('--seed <n>', 'the run seed')
    .action(async (name: string | undefined, f: PreviewFlags) => {
      const count = intFlag('--images', f.images, 1, 64);
      const pairs = intFlag('--pairs', f.pairs, 1, 8);
      const step = intFlag('--step', f.step, 0);
      if (!f.out.toLowerCase().endsWith('.png')) throw new UsageError(`--out ${f.out}: expected a .png file name`);
      // where the PNG goes is checked before the sheet is made
      if (existsSync(f.out) && statSync(f.out).isDirectory()) throw new UsageError(`--out ${f.out}: is a folder; give a .png file name`);
      checkOutputDir(dirname(resolve(f.out)), `--out ${f.out}: its folder ${dirname(f.out)}`);
      if (name && !KNOWN.includes(name)) throw new UsageError(`data preview ${name}: unknown dataset '${name}' (expected one of: ${KNOWN.join(', ')})`);
      if (!name && f.dataPath) throw new UsageError('--data-path needs the dataset name too');
      // as data info says it: the flag given, not the --data it would become
      if (name === 'synthetic' && f.dataPath) throw new UsageError('--data-path: the synthetic dataset is built in; it reads no path');
      const preset = f.preset ?? (name ? PRESET_FOR[name] : 'smoke') ?? 'smoke';
      const data = name && f.dataPath ? `${name}:${resolve(f.dataPath)}` : name;
      const dataLabel = name ? `data preview ${name}${f.dataPath ? ` --data-path ${f.dataPath}` : ''}` : undefined;
      const c = configFromFlags({ preset, set: f.set, data, ...(dataLabel ? { dataLabel } : {}), seed: f.seed, results: '' }, [], { trains: false });
      // loaded here, not at start-up: these pull in TensorFlow.js and sharp
      const { loadRunData, augmentConfigOf } = await import('../components/index.ts');
      const { previewSheet } = await import('../data/preview.ts');
      const { writeFileAtomic } = await import('../engine/files.ts');
      const ds = await inDataCommand(() => loadRunData(c));
      const aug = augmentConfigOf(c, ds);
      const sheet = await previewSheet(ds, aug, { count: Math.min(count, ds.train.n), pairs, seed: c.seed, step, batchSize: c.optim.batch_size, shuffle: c.train.shuffle });
      writeFileAtomic(resolve(f.out), sheet.png);
      process.stdout.write(
        `${resolve(f.out)}: ${sheet.batch.n} ${ds.name} images (${sheet.batch.h}x${sheet.batch.w}) of step ${step}'s batch, ` +
          `${pairs} pair${pairs > 1 ? 's' : ''} of views at ${aug.imageSize} px (preset ${preset}, blur sigma ${aug.blurSigma.map((x) => x.toFixed(3)).join('-')} px), ${sheet.width}x${sheet.height}\n`,
      );
    });
}

export function dataCommand(): Command {
  // sub-commands added with addCommand do not inherit exitOverride: set it so errors reach main's boundary
  return new Command('data')
    .description('get a dataset (fetch), describe one (info), or look at its training views (preview)')
    .addCommand(fetchCmd().exitOverride())
    .addCommand(infoCmd().exitOverride())
    .addCommand(previewCmd().exitOverride());
}
