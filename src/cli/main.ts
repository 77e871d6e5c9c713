/** The moco3 command line: one error boundary for every command. */
import { Command, CommanderError } from 'commander';
import { checkEnv } from './env.ts';
import { trainCommand } from './train.ts';
import { benchCommand } from './bench.ts';
import { doctorCommand } from './doctor.ts';
import { planCommand } from './plan.ts';
import { sweepCommand } from './sweep.ts';
import { evalCommand } from './eval.ts';
import { reportCommand } from './report.ts';
import { dataCommand } from './data.ts';
import { baselinesCommand } from './baselines.ts';
import { DISK_FAULTS, isNotInputFault } from '../config/errors.ts';
import { isInputError } from './errors.ts';
import { closeSync, openSync } from 'node:fs';
import { isatty } from 'node:tty';
import { runShutdown } from '../engine/shutdown.ts';
import { ownVersion } from '../train/meta.ts';
import { markOutputClosed, setProcessEntry, takeEarlySignals } from './supervise.ts';

export function buildProgram(): Command {
  const program = new Command('moco3')
    .description('MoCo v3 ViT training-stability study: train, sweep, evaluate, report')
    .version(ownVersion() ?? 'unknown', '-V, --version', 'print the version of moco3')
    .exitOverride();
  program.addCommand(trainCommand());
  program.addCommand(benchCommand());
  program.addCommand(doctorCommand());
  program.addCommand(planCommand());
  program.addCommand(sweepCommand());
  program.addCommand(evalCommand());
  program.addCommand(reportCommand());
  program.addCommand(dataCommand());
  program.addCommand(baselinesCommand());
  return program;
}

/** The command path an argv names (`moco3 eval knn`), as far as it names commands. */
function commandPath(program: Command, argv: string[]): Command[] {
  const path = [program];
  for (const a of argv) {
    const next = path.at(-1)!.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!next) break;
    path.push(next);
  }
  return path;
}

/**
 * What commander would take without a word, said as one line before anything runs:
 * - an option that takes a value, given the next option as its value (`--out --dry-run`, `--out=--dry-run`:
 *   the value left out): commander takes `--dry-run` as the folder, and the command would run without the
 *   option the user typed (a dry run would train). A value that is no option of the command (`--set -1`, a
 *   negative number) is the value, and so is any value of an option whose values are options of another
 *   program (`--sbatch-arg --mem=4G`);
 * - an option of one value given twice (`-c a.yaml -c b.yaml`: commander keeps the last, the first file
 *   dropped); the options that collect (`--set`, `--sbatch-arg`) take any number;
 * - a switch and its `--no-` form together (`--augment --no-augment`: the last one won).
 */
const VALUE_MAY_BE_AN_OPTION = new Set(['--sbatch-arg']);
function optionAsValue(path: Command[], argv: string[]): string | null {
  const options = path.flatMap((c) => c.options);
  const flags = new Set(['-h', '--help', ...options.flatMap((o) => [o.long, o.short]).filter((f): f is string => !!f)]);
  type Opt = (typeof options)[number];
  const given = new Map<Opt, string[]>();
  /** the option `name` with its value (undefined: a switch, or none left) */
  const take = (o: Opt, name: string, value: string | undefined): string | null => {
    if (o.required && value !== undefined && !VALUE_MAY_BE_AN_OPTION.has(o.long ?? '') && flags.has(value.split('=')[0]!)) {
      return `${name}: expected a value, got the option ${value} (the value left out?)`;
    }
    given.set(o, [...(given.get(o) ?? []), value ?? name]);
    return null;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    // help asked for: commander prints it whatever else the line holds
    if (a === '-h' || a === '--help') return null;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(0, eq) : a;
      const o = options.find((x) => x.long === name);
      if (!o) continue;
      const value = o.required ? (eq > 0 ? a.slice(eq + 1) : argv[++i]) : undefined;
      const bad = take(o, name, value);
      if (bad) return bad;
    } else if (a.startsWith('-') && a.length > 1) {
      // short options, as commander reads them: `-q`, a group of switches `-qv`, and the last of a group or
      // one alone taking the rest of the word (`-psmoke`, `-o--dry-run`) or the next word as its value
      for (let k = 1; k < a.length; k++) {
        if (a[k] === 'h') return null; // help in a group (`-qh`): commander prints it
        const o = options.find((x) => x.short === `-${a[k]}`);
        if (!o) break;
        if (!o.required) {
          const bad = take(o, `-${a[k]}`, undefined);
          if (bad) return bad;
          continue;
        }
        const value = k + 1 < a.length ? a.slice(k + 1) : argv[++i];
        // commander keeps a short option's '=' in its value (`-o=dir` names the folder `=dir`)
        if (value?.startsWith('=')) return `-${a[k]}${value}: a short option takes its value without '=' (-${a[k]} ${value.slice(1)}${o.long ? `, or ${o.long}=${value.slice(1)}` : ''})`;
        const bad = take(o, `-${a[k]}`, value);
        if (bad) return bad;
        break;
      }
    }
  }
  for (const [o, values] of given) {
    if (o.required && values.length > 1 && !Array.isArray(o.defaultValue)) return `${o.long ?? o.short} given ${values.length} times (${values.join(', ')}): give it once`;
    if (o.negate) {
      const on = [...given.keys()].find((x) => !x.negate && x.attributeName() === o.attributeName());
      if (on) return `${on.long} and ${o.long} given together: give one of them`;
    }
  }
  return null;
}

/** Commander's error text ("error: unknown option '--x'\n(Did you mean --y?)") as one line. */
function commanderLine(text: string): string {
  return text
    .trim()
    .replace(/^error: /, '')
    .replace(/\s*\n\s*\(Did you mean (.*)\?\)/, ' (did you mean $1?)')
    .split('\n')[0]!;
}

/** System errors (ENOENT, EACCES, ENOSPC, ...) that name a path are about the machine the user gave moco3. */
const PATH_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the disk',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'is a folder, not a file',
  EEXIST: 'already exists',
  EIO: 'input/output error (a failing disk?)',
  ENAMETOOLONG: 'a name in the path is too long',
};

/**
 * The reader of stdout or stderr gone (`moco3 sweep ... | head`, a dropped ssh session): the next write fails
 * with EPIPE (EIO on a hung-up terminal), which unhandled would kill the process mid-step, its run left
 * `running` with no checkpoint.
 * Instead `train` and `sweep` stop as for a closed terminal (onOutputClosed, src/cli/supervise.ts): a run
 * checkpoints and says `interrupted`; a command without a stop of its own goes on, its output dropped.
 */
export function stopOnClosedOutput(): void {
  const onError = (stream: NodeJS.WriteStream) => (e: NodeJS.ErrnoException) => {
    // EPIPE: a pipe's reader gone; EIO on a terminal: it hung up (on a file, a failing disk: not ours to hide)
    if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED' && !(e.code === 'EIO' && stream.isTTY)) throw e;
    markOutputClosed();
  };
  process.stdout.on('error', onError(process.stdout));
  process.stderr.on('error', onError(process.stderr));
  // Node (20) resets a terminal's modes at exit and aborts (SIGABRT, a core dump where allowed) when the
  // terminal has hung up meanwhile, after moco3 had stopped cleanly. A standard stream that was a terminal
  // and no longer is one is pointed at /dev/null first: Node leaves a reopened descriptor alone.
  const terminals = [0, 1, 2].filter((fd) => isatty(fd));
  if (terminals.length) {
    process.once('exit', () => {
      for (const fd of terminals) {
        if (isatty(fd)) continue;
        try {
          closeSync(fd);
          // the lowest free descriptor: the one just closed
          openSync('/dev/null', fd === 0 ? 'r' : 'w');
        } catch {
          /* nothing more to do at exit */
        }
      }
    });
  }
}

/**
 * Runs one moco3 command; returns its exit code. `processEntry`: moco3 owns the process (bin/moco3.js), so
 * a sweep may run itself in a supervised child process (supervise.ts); `earlySignals`: bin/moco3.js's record
 * of the USR1 and USR2 that came before the command's handlers (takeEarlySignals).
 */
export async function main(argv: string[], opts: { processEntry?: boolean; earlySignals?: () => NodeJS.Signals[] } = {}): Promise<number> {
  setProcessEntry(opts.processEntry === true, opts.earlySignals);
  if (opts.processEntry) stopOnClosedOutput();
  const program = buildProgram();
  let commanderText = '';
  const quiet = (c: Command): void => {
    c.exitOverride().configureOutput({ outputError: (text) => (commanderText += text), writeErr: (text) => (commanderText += text) });
    c.commands.forEach(quiet);
  };
  quiet(program);
  const debug = process.env.MOCO3_DEBUG === '1';
  try {
    checkEnv();
    // only train and sweep act on a warning kept while moco3 started (takeEarlySignals): any other command
    // gets it now, as it always would have (USR2 ends it)
    const path = commandPath(program, argv);
    const command = path[1]?.name();
    if (command !== 'train' && command !== 'sweep') for (const sig of takeEarlySignals()) process.kill(process.pid, sig);
    // `moco3 help <group> <command>`: commander's help command stops at the group (it printed eval's help for
    // `help eval knn`, and for `help eval knm` too, exit 0): the command's help, or no such command
    if (argv[0] === 'help' && argv.length > 2) {
      const names = argv.slice(1);
      const found = commandPath(program, names);
      const at = found.at(-1)!;
      const subs = at.commands.map((c) => c.name()).filter((c) => c !== 'help');
      // a word past a command of no sub-commands (`help sweep batch-size`, `help eval knn --help`): its help
      if (found.length - 1 < names.length && subs.length > 0) {
        const name = found.map((c) => c.name()).join(' ');
        process.stderr.write(`${name}: help ${names[found.length - 1]}: unknown command (one of: ${subs.join(', ')})\n`);
        return 2;
      }
      process.stdout.write(at.helpInformation());
      return 0;
    }
    const valueLeftOut = optionAsValue(path, argv);
    if (valueLeftOut) {
      const name = path.map((c) => c.name()).join(' ');
      process.stderr.write(`moco3: ${valueLeftOut}\n(${name} --help lists the options)\n`);
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      const path = commandPath(program, argv);
      const name = path.map((c) => c.name()).join(' ');
      if (e.code === 'commander.help' || e.code === 'commander.executeSubCommandAsync') {
        // a command group without its sub-command
        const subs = path.at(-1)!.commands.map((c) => c.name());
        // `moco3 [group] help <name>` of no such command
        const at = path.length - 1;
        const asked = argv[at] === 'help' ? argv[at + 1] : undefined;
        if (asked !== undefined && !subs.includes(asked)) {
          process.stderr.write(`${name}: help ${asked}: unknown command (one of: ${subs.filter((c) => c !== 'help').join(', ')})\n`);
          return 2;
        }
        process.stderr.write(`${name}: which command? (one of: ${subs.join(', ')})\n(${name} --help says what each does)\n`);
        return 2;
      }
      process.stderr.write(`${name}: ${commanderLine(commanderText || e.message)}\n(${name} --help lists the ${e.code === 'commander.unknownCommand' ? 'commands' : 'options'})\n`);
      return 2;
    }
    if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    // bad input exits 2; the same kinds of error once a run has begun (its status says failed), and a
    // download that failed (the network, the server's bytes, a full disk), exit 1: marked notInputFault
    const input = isNotInputFault(e) ? 1 : 2;
    if (isInputError(e)) {
      process.stderr.write(`moco3: ${e.message.split('\n')[0]}\n`);
      return input;
    }
    const sys = e as NodeJS.ErrnoException;
    if (sys instanceof Error && typeof sys.code === 'string' && sys.code in PATH_ERRORS && typeof sys.path === 'string') {
      process.stderr.write(`moco3: ${sys.path}: ${PATH_ERRORS[sys.code]} (${sys.code}${sys.syscall ? ` in ${sys.syscall}` : ''})\n`);
      // a full or failing disk is no fault of the input (a download's is exit 1 too)
      return DISK_FAULTS.has(sys.code) ? 1 : input;
    }
    // an error of no message (a DOMException's AbortError) is said by its name
    process.stderr.write(`moco3: error: ${e instanceof Error ? e.message.split('\n')[0] || e.name : String(e)}\n`);
    if (!debug) process.stderr.write('(MOCO3_DEBUG=1 shows where it happened)\n');
    return 1;
  } finally {
    runShutdown();
  }
}
