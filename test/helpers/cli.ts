/**
 * The moco3 CLI run in-process (src/cli/main.ts): returns its exit code and the strings it wrote to stdout
 * and stderr, with `env` set for the call only. Bytes (the test runner's own serialized reports, written
 * from its child process) still go through.
 */
import { main } from '../../src/cli/main.ts';

/**
 * `bench --backend all` benches each backend in a child, `node <process.argv[1]> bench ...`: in-process, that is
 * the test file, whose children would run its tests again and start children of their own. For a `bench`, points
 * process.argv[1] at a path that is no script, so a child started where none should be fails at once, and so
 * does the test; returns what puts it back.
 */
export function noChildScript(args: string[]): () => void {
  const script = process.argv[1];
  if (args[0] === 'bench') process.argv[1] = '/nonexistent/moco3-in-process.js';
  return () => {
    process.argv[1] = script;
  };
}

export async function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const wOut = process.stdout.write.bind(process.stdout);
  const wErr = process.stderr.write.bind(process.stderr);
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const exitCode = process.exitCode;
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === 'string' ? (out.push(s), true) : (wOut as (...a: unknown[]) => boolean)(s, ...rest)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === 'string' ? (err.push(s), true) : (wErr as (...a: unknown[]) => boolean)(s, ...rest)) as typeof process.stderr.write;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.exitCode = undefined;
  const restoreScript = noChildScript(args);
  try {
    const code = await main(args);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    restoreScript();
    process.stdout.write = wOut;
    process.stderr.write = wErr;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    process.exitCode = exitCode;
  }
}
