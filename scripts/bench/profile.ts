import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT } from './launch.js';
import { table } from './report.js';
import { round } from './stats.js';

/** The parts of a V8 .cpuprofile the summary reads. */
interface CpuProfile {
  nodes: Array<{ id: number; hitCount?: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface ProfileLine {
  name: string;
  where: string;
  selfPct: number;
}

/** Where a frame's code lives: a file of ours (relative path), `<package>/<file>`, a `node:` module, or a V8 bucket. */
export function frameLocation(url: string, functionName = ''): { owner: string; file: string } {
  // V8's own buckets: (idle), (program), (garbage collector); other url-less frames are native.
  if (url === '') {
    const bucket = functionName.startsWith('(') ? functionName : '(native)';
    return { owner: bucket, file: bucket };
  }
  if (url.startsWith('node:')) return { owner: 'node', file: url };
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 'node_modules/'.length).split('/');
    const depth = rest[0]!.startsWith('@') ? 2 : 1;
    return { owner: rest.slice(0, depth).join('/'), file: rest.join('/') };
  }
  const file = path.relative(ROOT, url.startsWith('file://') ? new URL(url).pathname : url);
  return { owner: file, file };
}

/**
 * Self time per function and per owner (package or file of ours), as a share of the busy
 * samples: (idle) is left out, so the figures say where the work went, not how loaded we were.
 */
export function summarizeProfile(profile: CpuProfile, top = 12): { functions: ProfileLine[]; owners: ProfileLine[]; totalMs: number } {
  const hits = new Map<number, number>();
  if (profile.samples) for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const countOf = (node: CpuProfile['nodes'][number]) => hits.get(node.id) ?? node.hitCount ?? 0;
  const busy = profile.nodes.filter((n) => n.callFrame.functionName !== '(idle)');
  const total = busy.reduce((s, n) => s + countOf(n), 0);
  const byFunction = new Map<string, ProfileLine>();
  const byOwner = new Map<string, ProfileLine>();
  const add = (map: Map<string, ProfileLine>, key: string, line: Omit<ProfileLine, 'selfPct'>, count: number) => {
    const entry = map.get(key) ?? { ...line, selfPct: 0 };
    entry.selfPct += (count / Math.max(1, total)) * 100;
    map.set(key, entry);
  };
  for (const node of busy) {
    const count = countOf(node);
    if (count === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const { owner, file } = frameLocation(url, functionName);
    const name = functionName || '(anonymous)';
    add(byFunction, `${name}|${url}|${lineNumber}`, { name, where: url ? `${file}:${lineNumber + 1}` : file }, count);
    add(byOwner, owner, { name: owner, where: '' }, count);
  }
  const sorted = (map: Map<string, ProfileLine>) =>
    [...map.values()].sort((a, b) => b.selfPct - a.selfPct).slice(0, top).map((l) => ({ ...l, selfPct: round(l.selfPct, 1) }));
  return { functions: sorted(byFunction), owners: sorted(byOwner), totalMs: round((profile.endTime - profile.startTime) / 1000, 0) };
}

/** True for a frame of the suite's own code (not a dependency, not node). */
const runsOurCode = (url: string) => url !== '' && !url.startsWith('node:') && !url.includes('node_modules/') && url.includes(ROOT);

/** Reads every .cpuprofile in `dir` (one per process: the primary and each worker) and formats their summaries. */
export async function describeProfiles(dir: string): Promise<{ files: string[]; text: string }> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f));
  const parts: string[] = [];
  for (const file of files) {
    const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
    // One profile per thread: tsx's module-loader thread never runs our code and is left out.
    if (!profile.nodes.some((n) => runsOurCode(n.callFrame.url))) continue;
    const summary = summarizeProfile(profile);
    parts.push(
      `CPU profile ${path.relative(ROOT, file)} (${summary.totalMs} ms; self time as a share of busy time):`,
      table(['owner', 'self %'], summary.owners.map((o) => [o.name, String(o.selfPct)])),
      '',
      table(['function', 'where', 'self %'], summary.functions.map((f) => [f.name, f.where, String(f.selfPct)])),
      '',
    );
  }
  return { files, text: parts.join('\n') };
}
