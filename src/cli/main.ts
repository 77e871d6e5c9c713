/** The moco3 command line: one error boundary for every command. */
import { Command, CommanderError } from 'commander';
import { trainCommand } from './train.ts';
import { benchCommand } from './bench.ts';
import { doctorCommand } from './doctor.ts';
import { planCommand } from './plan.ts';
import { sweepCommand } from './sweep.ts';
import { evalCommand } from './eval.ts';
import { reportCommand } from './report.ts';
import { dataCommand } from './data.ts';
import { baselinesCommand } from './baselines.ts';
import { isInputError } from './errors.ts';
import { runShutdown } from '../engine/shutdown.ts';

export function buildProgram(): Command {
  const program = new Command('moco3')
    .description('MoCo v3 ViT training-stability study: train, sweep, evaluate, report')
    .showHelpAfterError('(moco3 --help lists the commands)')
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

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : 2;
    }
    if (isInputError(e)) {
      process.stderr.write(`moco3: ${e.message.split('\n')[0]}\n`);
      return 2;
    }
    process.stderr.write(`moco3: error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  } finally {
    runShutdown();
  }
}
