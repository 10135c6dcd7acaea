import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import forge from 'node-forge';
import { certificatePaths, ensureCertificates } from '../../lib/certs.js';

/**
 * Workload identities for mTLS tests: the suite's CA (lib/certs.ts ensureCertificates) signs
 * client certificates whose only name is a SPIFFE URI SAN (spiffe://<trust domain>/ns/<ns>/sa/<sa>),
 * as Istio's CA issues them, so RBAC principals and namespaces see a real peer identity.
 */

export interface Identity {
  certPem: string;
  keyPem: string;
}

export interface SpiffeCa {
  caPem: string;
  /** The server certificate and key of `service` (DNS names and 127.0.0.1). */
  server: Identity;
  /** A client certificate for the identity `cluster.local/ns/<ns>/sa/<sa>`. */
  issue: (principal: string) => Identity;
}

/** The suite's CA in `dir` (created if missing) and a function issuing SPIFFE client certificates. */
export async function spiffeCa(dir: string, service: string): Promise<SpiffeCa> {
  await ensureCertificates(dir, { services: [service] });
  const paths = certificatePaths(dir, service);
  const [caPem, caKeyPem, certPem, keyPem] = await Promise.all([paths.caPath, `${dir}/ca-key.pem`, paths.certPath, paths.keyPath].map((p) => readFile(p, 'utf8')));
  const caCert = forge.pki.certificateFromPem(caPem!);
  const caKey = forge.pki.privateKeyFromPem(caKeyPem!);
  const issue = (principal: string): Identity => {
    // forge handles RSA keys only; node's crypto makes the key in milliseconds.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const serial = randomBytes(16);
    serial[0] = serial[0]! & 0x7f;
    cert.serialNumber = serial.toString('hex');
    cert.validity.notBefore = new Date(Date.now() - 3600_000);
    cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
    cert.setSubject([]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true, serverAuth: true },
      // RFC 5280 §4.2.1.6: with an empty subject the SAN extension is critical. type 6 = URI.
      { name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: `spiffe://${principal.replace(/^spiffe:\/\//, '')}` }] },
    ]);
    cert.sign(caKey as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    return { certPem: forge.pki.certificateToPem(cert), keyPem: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  };
  return { caPem: caPem!, server: { certPem: certPem!, keyPem: keyPem! }, issue };
}
