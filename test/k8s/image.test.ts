import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/process.js';
import { BASE, ofKind } from './manifests.js';
import { kustomizeBuild } from './kustomize.js';
import type { Deployment } from './workloads.js';

/** Dockerfile instructions as [keyword, arguments], comments and continuations folded. */
function instructions(text: string): Array<[string, string]> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [keyword, ...rest] = l.split(/\s+/);
      return [keyword!.toUpperCase(), rest.join(' ')];
    });
}

/** The stages of a multi-stage Dockerfile: FROM line and the instructions under it. */
function stages(text: string) {
  const out: Array<{ from: string; steps: Array<[string, string]> }> = [];
  for (const [k, v] of instructions(text)) {
    if (k === 'FROM') out.push({ from: v, steps: [] });
    else out[out.length - 1]!.steps.push([k, v]);
  }
  return out;
}

/** .dockerignore patterns as regular expressions over repository paths (the subset we use: *, **, trailing /). */
function ignored(patterns: string[], file: string): boolean {
  return patterns.some((p) => {
    const body = p.replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\//g, '(?:.*/)?').replace(/\*/g, '[^/]*');
    return new RegExp(`^${body}(?:/.*)?$`).test(file);
  });
}

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const ignorePatterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
const [build, runtime, ...extra] = stages(dockerfile);
const deployments = ofKind<Deployment>(kustomizeBuild(BASE), 'Deployment');

describe('the container image', () => {
  it('builds in two stages on a Node LTS base, production dependencies only at run time', () => {
    expect(extra).toEqual([]);
    for (const stage of [build!, runtime!]) expect(stage.from).toMatch(/^node:(20|22|24)-bookworm-slim AS \w+$/);
    expect(build!.steps).toContainEqual(['RUN', 'npm ci --no-audit --no-fund']);
    expect(build!.steps).toContainEqual(['RUN', 'npm run build']);
    expect(runtime!.steps.find(([k, v]) => k === 'RUN' && v.includes('npm ci'))?.[1]).toMatch(/--omit=dev/);
    expect(runtime!.steps.filter(([k, v]) => k === 'COPY' && v.startsWith('--from='))).toEqual([['COPY', '--from=build /build/dist ./dist']]);
  });

  it('runs the Node major the developer default names (.nvmrc), one the engines range admits', () => {
    const major = readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim();
    expect(major).toBe('24');
    for (const stage of [build!, runtime!]) expect(stage.from.startsWith(`node:${major}-`)).toBe(true);
    const engines = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    const floor = /^>=(\d+)\.(\d+)$/.exec(engines);
    expect(floor, `engines.node "${engines}" is a ">=major.minor" floor`).not.toBeNull();
    expect(Number(major)).toBeGreaterThanOrEqual(Number(floor![1]));
  });

  it('runs as the numeric non-root user the Deployments declare', () => {
    const users = runtime!.steps.filter(([k]) => k === 'USER').map(([, v]) => v);
    expect(users).toEqual(['1000:1000']);
    for (const d of deployments) expect(d.spec.template.spec.securityContext?.runAsUser).toBe(1000);
  });

  it('runs the factory by default and each workload by the command its Deployment gives, from compiled sources that exist', () => {
    const cmd = runtime!.steps.find(([k]) => k === 'CMD')![1];
    expect(JSON.parse(cmd)).toEqual(['node', 'dist/jwt-factory/main.js']);
    const buildConfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const d of deployments) {
      const [node, script, ...args] = d.spec.template.spec.containers[0]!.command!;
      expect(node).toBe('node');
      // tsc with rootDir "." compiles <dir>/main.ts to dist/<dir>/main.js.
      const source = script!.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      expect(existsSync(path.join(ROOT, source)), source).toBe(true);
      expect(buildConfig.include).toContain(source.split('/')[0]);
      expect(args).toEqual(d.metadata.name === 'jwt-factory' ? [] : [d.metadata.name]);
    }
  });

  it("carries no app/.<service>.env (servicea's holds the demo client secret): every setting of a pod comes from its ConfigMap", () => {
    const copied = [...build!.steps, ...runtime!.steps].filter(([k]) => k === 'COPY').map(([, v]) => v);
    expect(copied.filter((v) => /\.env\b/.test(v))).toEqual([]);
    for (const file of ['app/.servicea.env', 'app/.serviceb.env', 'app/.servicec.env']) expect(ignored(ignorePatterns, file), file).toBe(true);
    // The build stage copies app/ whole: the ignore file is what keeps the .env files out of it.
    expect(build!.steps).toContainEqual(['COPY', 'app ./app']);
  });

  it('every file the build copies exists and is not ignored', () => {
    const sources = [...build!.steps, ...runtime!.steps]
      .filter(([k, v]) => k === 'COPY' && !v.startsWith('--from='))
      .flatMap(([, v]) => v.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const s of sources) {
      expect(existsSync(path.join(ROOT, s)), s).toBe(true);
      expect(ignored(ignorePatterns, s.replace(/^\.\//, '')), s).toBe(false);
    }
  });

  it.each(['keys/servicea.json', 'keys/servicea-private.pem', 'certs/ca-key.pem', 'cluster-secrets/key-encryption-key', 'node_modules/jose/package.json', '.env', 'app/some.key', 'dist/app/main.js', '.git/config'])(
    '.dockerignore keeps %s out of the build context',
    (file) => {
      expect(ignored(ignorePatterns, file)).toBe(true);
    },
  );
});
