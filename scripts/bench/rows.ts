import os from 'node:os';
import path from 'node:path';
import { GROUPS, type BenchOptions } from './args.js';
import { benchKeyId, issueTarget, prepareKey, startFactory, tempPaths, verifyTarget } from './factory.js';
import { measureBareFloor, startFloorServer } from './floors.js';
import { treeCpuMs, type Launched } from './launch.js';
import { alternateRounds, type CpuMeter, type LoadSettings, type LoadTarget } from './load.js';
import { gatewayLines, startGatewayContenders } from './gateway.js';
import { PEERS } from './peers.js';
import { describeProfiles } from './profile.js';
import { evaluateGoals, formatReport, ROW, type RowResult, type Verdict } from './report.js';
import { runScenarioRows } from './scenarios.js';
import { startPostgresFactory } from './store.js';
import type { ThrowawayPostgres } from '../postgres.js';

/** The run's context, printed above the table and stored in the JSON. */
export function machineContext() {
  const cpus = os.cpus();
  return { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, loadAverage: os.loadavg()[0]! };
}

/** The nice value the run got: what was asked, or the one it kept when raising was not allowed. */
export interface Priority {
  asked: number;
  nice: number;
}

/**
 * Asks for `nice` for the bench's own process before it starts any other: the servers and the
 * load generator inherit it at spawn, so on a shared machine the neighbours' work waits and falls
 * less on the figures. Raising (a negative value) needs root or CAP_SYS_NICE; without, the run
 * goes on at the priority it had, and the report says so.
 */
export function schedulingPriority(asked: number): Priority {
  if (asked === 0) return { asked, nice: os.getPriority() };
  try {
    os.setPriority(asked);
  } catch {
    /* not allowed: reported below */
  }
  return { asked, nice: os.getPriority() };
}

const priorityLine = (p: Priority) =>
  p.nice === p.asked || p.asked === 0
    ? `priority: nice ${p.nice}, for the bench and every process it starts`
    : `priority: nice ${p.nice} (nice ${p.asked} was not allowed: run as root or with CAP_SYS_NICE for figures the machine's other work moves less)`;

export interface BenchRun {
  machine: ReturnType<typeof machineContext> & { loadAverageAtStart: number; priority: Priority };
  settings: Omit<BenchOptions, 'help' | 'outDir'>;
  rows: RowResult[];
  verdicts: Verdict[];
  notes: string[];
  profiles?: string[];
  text: string;
}

/** A row loaded side by side with the others in alternating rounds. */
interface Contender {
  row: Omit<RowResult, 'load'>;
  target: LoadTarget;
  cpu: CpuMeter;
}

/**
 * The whole bench: the bare floor in a process of its own, then every HTTP contender (floors,
 * the factory, its peers) started together and loaded in alternating rounds, then the scenarios.
 */
export async function runBench(options: BenchOptions, tmpDir: string, progress: (line: string) => void, priority: Priority = { asked: 0, nice: os.getPriority() }): Promise<BenchRun> {
  const loadAverageAtStart = os.loadavg()[0]!;
  const settings: LoadSettings = { connections: options.connections, durationS: options.durationS, warmupS: options.warmupS };
  const want = (g: BenchOptions['groups'][number]) => options.groups.includes(g);
  const { alg } = options;
  const paths = tempPaths(tmpDir);
  const rows: RowResult[] = [];
  const notes: string[] = [];
  const started: Launched[] = [];
  const issue: Contender[] = [];
  const verify: Contender[] = [];
  const proxy: Contender[] = [];
  let postgres: ThrowawayPostgres | undefined;
  const skipped: RowResult[] = [];
  const meter = (p: Launched): CpuMeter => () => treeCpuMs(p.pid);
  const profileDir = options.cpuProf ? path.resolve(options.outDir, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  let factoryUrl: string | undefined;
  let factoryPid: number | undefined;

  try {
    if (want('floors')) {
      progress(`measuring the bare ${alg} floor (jose, ${options.connections} in flight, no HTTP, its own process)`);
      const bare = await measureBareFloor(alg, { ...settings, durationS: settings.durationS * options.rounds });
      rows.push({ id: ROW.bareIssue, label: `floor: ${alg} signature alone (jose SignJWT)`, group: 'floors', op: 'issue', load: bare.issue });
      rows.push({ id: ROW.bareVerify, label: `floor: ${alg} verification alone (jose jwtVerify)`, group: 'floors', op: 'verify', load: bare.verify });
      for (const kind of ['http', 'express'] as const) {
        const floor = await startFloorServer(kind, alg, path.join(tmpDir, `floor-${kind}.log`));
        started.push(floor.process);
        const name = kind === 'http' ? 'node:http + jose' : 'express 5 + express.json() + jose';
        issue.push({ row: { id: kind === 'http' ? ROW.httpIssue : ROW.expressIssue, label: `floor: ${name}, issue`, group: 'floors', op: 'issue' }, target: floor.issue, cpu: meter(floor.process) });
        verify.push({ row: { id: kind === 'http' ? ROW.httpVerify : ROW.expressVerify, label: `floor: ${name}, verify`, group: 'floors', op: 'verify' }, target: floor.verify, cpu: meter(floor.process) });
      }
    }
    if (want('factory') || want('peers') || want('store') || want('scenarios')) {
      progress(`starting the factory (LOG_LEVEL=${options.logLevel}, WORKERS=${options.workers ?? 'factory default'})`);
      const factory = await startFactory({
        keysDir: paths.keysDir,
        logLevel: options.logLevel,
        workers: options.workers,
        logFile: paths.factoryLog,
        ...(profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
      });
      started.push(factory);
      factoryUrl = `http://127.0.0.1:${factory.port}`;
      factoryPid = factory.pid;
      if (want('factory') || want('peers') || want('store')) {
        const key = await prepareKey(factoryUrl, benchKeyId(alg), alg);
        issue.push({ row: { id: ROW.factoryIssue, label: `jwt-factory POST /issueToken (${alg})`, group: 'factory', op: 'issue' }, target: issueTarget(factoryUrl, key), cpu: meter(factory) });
        if (want('factory')) {
          verify.push({ row: { id: ROW.factoryVerify, label: `jwt-factory POST /verify (${alg})`, group: 'factory', op: 'verify' }, target: verifyTarget(factoryUrl, key), cpu: meter(factory) });
        }
      }
    }
    if (want('peers')) {
      for (const peer of PEERS) {
        const reason = peer.unavailable();
        const row = { id: peer.id, label: peer.label, group: 'peers' as const, op: 'issue' as const };
        if (reason) {
          skipped.push({ ...row, skipped: reason });
          continue;
        }
        progress(`starting ${peer.label}`);
        const { process: server, target } = await peer.start(tmpDir, { logLevel: options.logLevel });
        started.push(server);
        issue.push({ row, target, cpu: meter(server) });
      }
    }
    if (want('store')) {
      const row = { id: ROW.storePostgres, label: `jwt-factory POST /issueToken (${alg}), KEY_STORE=postgres://`, group: 'store' as const, op: 'issue' as const };
      progress('starting a throwaway PostgreSQL and a factory on it');
      try {
        const store = await startPostgresFactory(alg, tmpDir, options.logLevel);
        postgres = store.postgres;
        started.push(store.factory);
        issue.push({ row, target: store.target, cpu: meter(store.factory) });
      } catch (err) {
        skipped.push({ ...row, skipped: `the PostgreSQL store did not start: ${(err as Error).message.split('\n')[0]}` });
      }
    }
    if (want('gateway')) {
      const gateway = await startGatewayContenders(tmpDir, progress);
      started.push(...gateway.started);
      proxy.push(...gateway.contenders);
      skipped.push(...gateway.skipped);
    }
    const contenders = [...issue, ...verify, ...proxy];
    if (contenders.length > 0) {
      const results = await alternateRounds(contenders, settings, options.rounds, (c, r) => progress(`round ${r + 1}/${options.rounds}: ${c.row.label}`));
      rows.push(...contenders.map((c) => ({ ...c.row, load: results.get(c)! })));
    }
    rows.push(...skipped);
    if (want('scenarios') && factoryUrl && factoryPid !== undefined) {
      rows.push(...(await runScenarioRows(settings, { factoryUrl, factoryPid, tmpDir }, progress)));
    }
  } finally {
    await Promise.all(started.map((p) => p.stop()));
    await postgres?.remove();
  }

  const sorted = [...rows].sort((a, b) => GROUPS.indexOf(a.group) - GROUPS.indexOf(b.group) || opRank(a) - opRank(b));
  const verdicts = evaluateGoals(sorted);
  const machine = { ...machineContext(), loadAverageAtStart, priority };
  const context = [
    `jwt-factory benchmark: ${machine.cpus} x ${machine.cpuModel}, Node ${machine.node}; load average ${machine.loadAverageAtStart.toFixed(1)} at the start, ${machine.loadAverage.toFixed(1)} at the end`,
    priorityLine(priority),
    `load: autocannon, ${options.connections} connections; ${options.rounds} round(s) of ${options.warmupS} s warm-up + ${options.durationS} s per row, alternating order; CPU = the server process's user + system time from /proc`,
    `factory: LOG_LEVEL=${options.logLevel}, WORKERS=${options.workers ?? 'factory default'}`,
  ];
  const { help: _help, outDir: _outDir, ...rest } = options;
  // The profile is written when the factory exits, which the finally above waited for.
  const profile = profileDir ? await describeProfiles(profileDir) : undefined;
  const gatewayText = gatewayLines(sorted);
  const text = [formatReport(sorted, verdicts, context), ...(gatewayText.length > 0 ? ['', ...gatewayText] : []), ...notes.map((n) => `note: ${n}`), ...(profile ? ['', profile.text] : [])].join('\n');
  return { machine, settings: rest, rows: sorted, verdicts, notes, ...(profile ? { profiles: profile.files } : {}), text };
}

/** Issue rows before verify rows inside a group, each kind in the order it was measured. */
const opRank = (row: RowResult) => (row.op === 'verify' ? 1 : 0);
