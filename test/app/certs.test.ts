import { promises as fs } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCertificates, type CertificateReport } from '../../lib/certs.js';

const services = ['servicea', 'serviceb'];
let tmp: string;
let dir: string;
let first: CertificateReport;

const actions = (r: CertificateReport) => Object.fromEntries(r.entries.map((e) => [e.name, e.action]));
const read = (name: string) => fs.readFile(path.join(dir, name), 'utf8');

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'certs-'));
  dir = path.join(tmp, 'certs');
  first = await ensureCertificates(dir, { services });
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('ensureCertificates', () => {
  it('creates a CA and one server certificate per service, private keys mode 0600', async () => {
    expect(actions(first)).toEqual({ ca: 'created', servicea: 'created', serviceb: 'created' });
    for (const key of ['ca-key.pem', 'servicea-key.pem', 'serviceb-key.pem']) {
      expect((await fs.stat(path.join(dir, key))).mode & 0o777).toBe(0o600);
    }
    expect((await fs.stat(path.join(dir, 'ca.pem'))).mode & 0o777).toBe(0o644);
  });

  it('issues server certificates for localhost, 127.0.0.1 and the Kubernetes names, signed by the CA', async () => {
    const ca = new X509Certificate(await read('ca.pem'));
    const leaf = new X509Certificate(await read('serviceb.pem'));
    expect(ca.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.subjectAltName?.split(', ')).toEqual(
      expect.arrayContaining(['DNS:localhost', 'IP Address:127.0.0.1', 'DNS:serviceb', 'DNS:serviceb.jwt-suite.svc', 'DNS:serviceb.jwt-suite.svc.cluster.local']),
    );
    expect(leaf.checkHost('serviceb.jwt-suite.svc.cluster.local')).toBeDefined();
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
  });

  it('a rerun keeps certificates that are still valid, byte for byte', async () => {
    const before = await read('serviceb.pem');
    const again = await ensureCertificates(dir, { services });
    expect(actions(again)).toEqual({ ca: 'kept', servicea: 'kept', serviceb: 'kept' });
    expect(await read('serviceb.pem')).toBe(before);
  });

  it('replaces a server certificate whose key is missing and keeps the others', async () => {
    const keptA = await read('servicea.pem');
    await fs.rm(path.join(dir, 'serviceb-key.pem'));
    const again = await ensureCertificates(dir, { services });
    expect(actions(again)).toEqual({ ca: 'kept', servicea: 'kept', serviceb: 'created' });
    expect(await read('servicea.pem')).toBe(keptA);
  });

  it('renews a certificate signed by another CA', async () => {
    const foreign = await ensureCertificates(path.join(tmp, 'foreign'), { services: ['servicea'] });
    await fs.copyFile(foreign.entries[1]!.certPath, path.join(dir, 'servicea.pem'));
    await fs.copyFile(foreign.entries[1]!.keyPath, path.join(dir, 'servicea-key.pem'));
    const again = await ensureCertificates(dir, { services });
    expect(again.entries.find((e) => e.name === 'servicea')).toMatchObject({ action: 'renewed', reason: 'not signed by the current CA' });
    const ca = new X509Certificate(await read('ca.pem'));
    expect(new X509Certificate(await read('servicea.pem')).verify(ca.publicKey)).toBe(true);
  });

  it('renews certificates whose names no longer match the namespace', async () => {
    const again = await ensureCertificates(dir, { services: ['serviceb'], namespace: 'other' });
    expect(again.entries[1]).toMatchObject({ action: 'renewed', reason: 'names differ' });
    expect(new X509Certificate(await read('serviceb.pem')).subjectAltName).toContain('DNS:serviceb.other.svc');
  });
  it('renews server certificates that expire within 30 days, keeping the CA', async () => {
    const later = new Date(Date.now() + 380 * 24 * 3600 * 1000);
    const again = await ensureCertificates(dir, { services, now: later });
    expect(actions(again)).toEqual({ ca: 'kept', servicea: 'renewed', serviceb: 'renewed' });
    expect(again.entries[1]!.reason).toBe('expired or expiring within 30 days');
    expect(new Date(again.entries[1]!.notAfter).getTime()).toBeGreaterThan(later.getTime());
  });

});
