/**
 * A real one-node Slurm cluster on localhost for tests: munged, slurmctld and slurmd started from a
 * generated slurm.conf, every file (key, state, spool, logs, pid files, munge socket) in a temporary
 * folder, the daemons as the current user (root on CI), no cgroups (proctrack/linuxproc, task/none), no
 * accounting. stop() ends the daemons it started and removes the folder.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface SlurmCluster {
  dir: string;
  /** the environment for Slurm's client commands (SLURM_CONF) */
  env: NodeJS.ProcessEnv;
  /** run a Slurm command against this cluster; its stdout */
  cmd(name: string, args: string[]): string;
  logs(): string;
  stop(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readPid(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startSlurm(dir: string): Promise<SlurmCluster> {
  mkdirSync(join(dir, 'state'), { recursive: true });
  mkdirSync(join(dir, 'spool'), { recursive: true });
  mkdirSync(join(dir, 'log'), { recursive: true });
  chmodSync(dir, 0o755);
  const key = join(dir, 'munge.key');
  writeFileSync(key, randomBytes(1024), { mode: 0o600 });
  const sock = join(dir, 'munge.sock');
  const pids = { munged: join(dir, 'munged.pid'), slurmctld: join(dir, 'slurmctld.pid'), slurmd: join(dir, 'slurmd.pid') };
  const host = hostname();
  // ports of our own so the test never talks to another Slurm on this machine
  const base = 20000 + Math.floor(Math.random() * 20000);
  const conf = join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=moco3test',
      `SlurmctldHost=${host}(127.0.0.1)`,
      `SlurmctldPort=${base}`,
      `SlurmdPort=${base + 1}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${sock}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${pids.slurmctld}`,
      `SlurmdPidFile=${pids.slurmd}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'log', 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      'MpiDefault=none',
      'ReturnToService=2',
      'SchedulerParameters=sched_interval=1',
      'KillWait=30',
      `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus().length} State=UNKNOWN`,
      `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const stopAll = () => {
    for (const p of [pids.slurmd, pids.slurmctld, pids.munged]) {
      const pid = readPid(p);
      if (pid !== null && alive(pid)) process.kill(pid, 'SIGTERM');
    }
  };
  const cluster: SlurmCluster = {
    dir,
    env,
    cmd: (name, args) => execFileSync(name, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }),
    logs: () =>
      ['slurmctld.log', 'slurmd.log', 'munged.log']
        .map((f) => join(dir, 'log', f))
        .filter(existsSync)
        .map((f) => `== ${f}\n${readFileSync(f, 'utf8').split('\n').slice(-40).join('\n')}`)
        .join('\n'),
    stop() {
      // jobs first: their slurmstepd would outlive the daemons
      try {
        cluster.cmd('scancel', ['--full', '--partition', 'debug']);
        const t0 = Date.now();
        while (Date.now() - t0 < 15_000 && cluster.cmd('squeue', ['-h']).trim() !== '') spawnSync('sleep', ['0.2']);
      } catch {
        /* controller gone */
      }
      stopAll();
      const t0 = Date.now();
      while (Date.now() - t0 < 10_000 && Object.values(pids).some((p) => readPid(p) !== null && alive(readPid(p)!))) {
        spawnSync('sleep', ['0.1']);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const start = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.error?.message ?? ''}${r.stderr}\n${cluster.logs()}`);
  };
  try {
    // munged refuses root and a world-writable socket folder (/tmp) unless forced
    start('munged', ['--force', `--socket=${sock}`, `--key-file=${key}`, `--pid-file=${pids.munged}`, `--log-file=${join(dir, 'log', 'munged.log')}`, `--seed-file=${join(dir, 'munged.seed')}`]);
    start('slurmctld', ['-f', conf]);
    start('slurmd', ['-f', conf, '-N', host]);
    // the node registers within a few seconds
    for (let i = 0; ; i++) {
      let state = '';
      try {
        state = cluster.cmd('sinfo', ['-h', '-N', '-o', '%T']).trim();
      } catch {
        /* controller not answering yet */
      }
      if (state === 'idle') break;
      if (i > 100) throw new Error(`slurm node not idle after 20 s (state '${state}')\n${cluster.logs()}`);
      await sleep(200);
    }
  } catch (e) {
    cluster.stop();
    throw e;
  }
  return cluster;
}
