import { spawn } from 'node:child_process';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import type { Algorithm } from './args.js';
import { ISSUE_BODY, ISSUE_CLAIMS } from './factory.js';
import { launch, ROOT, type Launched } from './launch.js';
import type { LoadResult, LoadSettings, LoadTarget } from './load.js';

/**
 * The floors: what the factory's signature and verification cost with nothing of the factory
 * around them. `bare` is jose alone (no HTTP, as many operations in flight as the load has
 * connections); `http` adds node:http and JSON.parse; `express` is express 5 + express.json()
 * (the framework floor: the least an express route doing the same job can cost).
 */
export type FloorKind = 'bare' | 'http' | 'express';

const SCRIPT = 'scripts/bench/floor-process.ts';

/** The bare floor's issue and verify figures, measured in a process of its own. */
export async function measureBareFloor(alg: Algorithm, settings: LoadSettings): Promise<{ issue: LoadResult; verify: LoadResult }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, SCRIPT)], { cwd: ROOT, env: { FLOOR: 'bare', ALG: alg }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(JSON.stringify({ inFlight: settings.connections, durationS: settings.durationS, warmupS: settings.warmupS }));
  const [stdout, stderr, code] = await Promise.all([text(child.stdout), text(child.stderr), new Promise<number | null>((resolve) => child.once('exit', resolve))]);
  if (code !== 0) throw new Error(`the bare ${alg} floor failed (exit ${code}): ${stderr.slice(-2000)}`);
  const parsed = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<'issue' | 'verify', Pick<LoadResult, 'rps' | 'p50Ms' | 'p99Ms' | 'requests' | 'serverCpuMsPerRequest'>>;
  const complete = (r: (typeof parsed)['issue']): LoadResult => ({ ...r, warmupRequests: 0, errors: 0, errorDetail: { non2xx: 0, socketErrors: 0, timeouts: 0 }, durationS: settings.durationS });
  return { issue: complete(parsed.issue), verify: complete(parsed.verify) };
}

/** A floor server on a free port, with a token it signed (for its verification row). */
export interface FloorServer {
  kind: Exclude<FloorKind, 'bare'>;
  process: Launched;
  issue: LoadTarget;
  verify: LoadTarget;
}

/** Starts the node:http or express floor for `alg` as a real process. */
export async function startFloorServer(kind: Exclude<FloorKind, 'bare'>, alg: Algorithm, logFile: string): Promise<FloorServer> {
  const server = await launch(SCRIPT, { env: { FLOOR: kind, ALG: alg, PORT: '0' }, logFile });
  const base = `http://127.0.0.1:${server.port}`;
  const { token } = (await (await fetch(`${base}/token`)).json()) as { token: string };
  return {
    kind,
    process: server,
    issue: { url: `${base}/issue`, method: 'POST', body: ISSUE_BODY },
    verify: { url: `${base}/verify`, method: 'POST', body: JSON.stringify({ token, aud: ISSUE_CLAIMS.aud, sub: 'bench' }) },
  };
}
