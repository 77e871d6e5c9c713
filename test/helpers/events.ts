/**
 * A moco3 CLI child whose stdout is JSON lines (`--json`): each line is parsed into `events` as it comes, and
 * `onEvent` sees it at once (to kill the child at a chosen moment, say). Runs the TypeScript entry `cli`
 * through tsx, from the repository root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const repo = join(import.meta.dirname, '..', '..');

// events are whatever the CLI printed; tests pick fields by name
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Ev = Record<string, any>;

export interface EventChild {
  child: ChildProcess;
  events: Ev[];
  /** the exit, with everything written to stderr */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/**
 * `noCore`: no core files (ulimit -c 0), for a test that crashes the CLI on purpose (SIGABRT, SIGSEGV) and
 * must not leave a core dump in the repository where the machine's limit allows one.
 */
export function spawnEvents(
  cli: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onEvent?: (e: Ev, n: number, child: ChildProcess) => void,
  opts: { noCore?: boolean } = {},
): EventChild {
  const argv = [process.execPath, '--import', 'tsx', cli, ...args];
  // `exec` keeps the pid: child.pid is the CLI's
  const [cmd, ...rest] = opts.noCore ? ['/bin/sh', '-c', 'ulimit -c 0 && exec "$0" "$@"', ...argv] : argv;
  const child = spawn(cmd!, rest, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Ev[] = [];
  let stderr = '';
  let buf = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const ev = JSON.parse(buf.slice(0, i)) as Ev;
      events.push(ev);
      buf = buf.slice(i + 1);
      onEvent?.(ev, events.length, child);
    }
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    // 'close': the exit, and stdout and stderr read to their end
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, events, done };
}
