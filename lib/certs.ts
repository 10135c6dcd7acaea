import { generateKeyPair, randomBytes, X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import { readIfExists, writeFileAtomic } from './files.js';
import { DEFAULT_NAMESPACE } from './suite.js';

/**
 * The suite's local TLS material: one CA and one server certificate per service, made with
 * node-forge (X.509) over RSA keys from node's crypto (forge's pure-JS RSA keygen takes
 * seconds per key; node's takes milliseconds).
 *
 * Layout of `dir` (the same names everywhere: services, tests, demo, Kubernetes Secrets):
 *   ca.pem, ca-key.pem (0600)           the suite's CA
 *   <service>.pem, <service>-key.pem    a server certificate and its private key (0600)
 */

export { DEFAULT_NAMESPACE } from './suite.js';
/** The services that get a server certificate when none are named. */
export const DEFAULT_SERVICES = ['jwt-factory', 'servicea', 'serviceb', 'servicec'] as const;

const CA_DAYS = 3650;
const LEAF_DAYS = 397;
/** A certificate that expires within this window is renewed on the next run. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;

const generateKeyPairAsync = promisify(generateKeyPair);

export interface CertificateOptions {
  /** Services that get a server certificate (default: the factory and the three services). */
  services?: readonly string[];
  /** Namespace for the `<svc>.<ns>.svc[.cluster.local]` names (default `jwt-suite`). */
  namespace?: string;
  /** The clock: validity is checked and set from this instant. */
  now?: Date;
}

/** What `ensureCertificates` found or did for one file pair. */
export interface CertificateStatus {
  name: string;
  certPath: string;
  keyPath: string;
  action: 'created' | 'kept' | 'renewed';
  reason?: string;
  notAfter: string;
}

export interface CertificateReport {
  dir: string;
  caPath: string;
  entries: CertificateStatus[];
}

/** Paths of the files of one service inside a certificates folder. */
export function certificatePaths(dir: string, name: string): { certPath: string; keyPath: string; caPath: string } {
  return { certPath: path.join(dir, `${name}.pem`), keyPath: path.join(dir, `${name}-key.pem`), caPath: path.join(dir, 'ca.pem') };
}

/** The DNS names and IP addresses a service's certificate must carry. */
export function subjectAltNames(service: string, namespace = DEFAULT_NAMESPACE): { dns: string[]; ips: string[] } {
  return {
    dns: ['localhost', service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`],
    ips: ['127.0.0.1'],
  };
}

async function newRsaKey(): Promise<{ privateKey: KeyObject; forgeKey: forge.pki.rsa.PrivateKey; forgePublic: forge.pki.rsa.PublicKey }> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
  return {
    privateKey,
    forgeKey: forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey,
    forgePublic: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()) as forge.pki.rsa.PublicKey,
  };
}

/** A positive random 128-bit serial number (RFC 5280 §4.1.2.2: positive, at most 20 octets). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  // Backdate by an hour so a peer whose clock is slightly behind still accepts it.
  cert.validity.notBefore = new Date(now.getTime() - 3600 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}

interface Ca {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  x509: X509Certificate;
}

async function createCa(now: Date): Promise<{ ca: Ca; certPem: string; keyPem: string }> {
  const { privateKey, forgeKey, forgePublic } = await newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic;
  cert.serialNumber = serialNumber();
  validity(cert, now, CA_DAYS);
  const subject = [
    { name: 'commonName', value: 'jwt-factory suite local CA' },
    { name: 'organizationName', value: 'jwt-factory suite' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  return {
    ca: { cert, key: forgeKey, x509: new X509Certificate(certPem) },
    certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

async function createLeaf(ca: Ca, service: string, namespace: string, now: Date): Promise<{ certPem: string; keyPem: string }> {
  const { privateKey, forgePublic } = await newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic;
  cert.serialNumber = serialNumber();
  validity(cert, now, LEAF_DAYS);
  cert.setSubject([{ name: 'commonName', value: service }]);
  cert.setIssuer(ca.cert.subject.attributes);
  const names = subjectAltNames(service, namespace);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName',
      altNames: [...names.dns.map((value) => ({ type: 2, value })), ...names.ips.map((ip) => ({ type: 7, ip }))],
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/**
 * Why an existing certificate must be replaced, or undefined when it may be kept: missing
 * files, unreadable PEM, key not matching, not issued by `issuer`, expiring soon, other names.
 */
function whyReplace(certPem: string | undefined, keyPem: string | undefined, now: Date, issuer?: X509Certificate, wanted?: { dns: string[]; ips: string[] }): string | undefined {
  if (certPem === undefined || keyPem === undefined) return 'missing';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return 'key does not match the certificate';
  } catch {
    return 'unreadable';
  }
  if (new Date(cert.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return 'expired or expiring within 30 days';
  if (new Date(cert.validFrom).getTime() > now.getTime()) return 'not yet valid';
  if (issuer && (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey))) return 'not signed by the current CA';
  if (wanted) {
    const have = (cert.subjectAltName ?? '').split(', ').sort().join(',');
    const want = [...wanted.dns.map((d) => `DNS:${d}`), ...wanted.ips.map((ip) => `IP Address:${ip}`)].sort().join(',');
    if (have !== want) return 'names differ';
  }
  return undefined;
}

/**
 * Makes sure `dir` holds a valid CA and one server certificate per service. Reruns keep what
 * is still valid and replace what is missing, expiring, mismatched or signed by another CA
 * (a new CA re-issues every server certificate). Private keys are written 0600, atomically.
 */
export async function ensureCertificates(dir: string, options: CertificateOptions = {}): Promise<CertificateReport> {
  const now = options.now ?? new Date();
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const services = options.services ?? DEFAULT_SERVICES;
  await fs.mkdir(dir, { recursive: true });
  const entries: CertificateStatus[] = [];

  const caFiles = { certPath: path.join(dir, 'ca.pem'), keyPath: path.join(dir, 'ca-key.pem') };
  const caCertPem = await readIfExists(caFiles.certPath);
  const caKeyPem = await readIfExists(caFiles.keyPath);
  let caReason = whyReplace(caCertPem, caKeyPem, now);
  if (caReason === undefined && !new X509Certificate(caCertPem!).ca) caReason = 'not a CA certificate';
  let ca: Ca;
  if (caReason === undefined) {
    const cert = forge.pki.certificateFromPem(caCertPem!);
    ca = { cert, key: forge.pki.privateKeyFromPem(caKeyPem!) as forge.pki.rsa.PrivateKey, x509: new X509Certificate(caCertPem!) };
    entries.push({ name: 'ca', ...caFiles, action: 'kept', notAfter: new Date(ca.x509.validTo).toISOString() });
  } else {
    const made = await createCa(now);
    ca = made.ca;
    // Key first: a crash between the two writes leaves a mismatch, which the next run repairs.
    await writeFileAtomic(caFiles.keyPath, made.keyPem, { mode: 0o600, dirMode: 0o755 });
    await writeFileAtomic(caFiles.certPath, made.certPem, { mode: 0o644, dirMode: 0o755 });
    entries.push({ name: 'ca', ...caFiles, action: caReason === 'missing' ? 'created' : 'renewed', reason: caReason, notAfter: new Date(ca.x509.validTo).toISOString() });
  }

  // Key generation runs on libuv's thread pool: issue the certificates in parallel.
  const leaves = await Promise.all(
    services.map(async (service): Promise<CertificateStatus> => {
      const { certPath, keyPath } = certificatePaths(dir, service);
      const reason = whyReplace(await readIfExists(certPath), await readIfExists(keyPath), now, ca.x509, subjectAltNames(service, namespace));
      if (reason === undefined) {
        const notAfter = new X509Certificate(await fs.readFile(certPath)).validTo;
        return { name: service, certPath, keyPath, action: 'kept', notAfter: new Date(notAfter).toISOString() };
      }
      const leaf = await createLeaf(ca, service, namespace, now);
      await writeFileAtomic(keyPath, leaf.keyPem, { mode: 0o600, dirMode: 0o755 });
      await writeFileAtomic(certPath, leaf.certPem, { mode: 0o644, dirMode: 0o755 });
      const notAfter = new X509Certificate(leaf.certPem).validTo;
      return { name: service, certPath, keyPath, action: reason === 'missing' ? 'created' : 'renewed', reason, notAfter: new Date(notAfter).toISOString() };
    }),
  );
  entries.push(...leaves);
  return { dir, caPath: caFiles.certPath, entries };
}

/** Reads the CA certificate and a service's certificate and key, as the HTTPS server needs them. */
export async function loadServerTls(dir: string, service: string): Promise<{ ca: string; cert: string; key: string }> {
  const paths = certificatePaths(dir, service);
  const [ca, cert, key] = await Promise.all([paths.caPath, paths.certPath, paths.keyPath].map((p) => fs.readFile(p, 'utf8')));
  // Fail at start-up, not at the first handshake, when the pair does not belong together.
  if (!new X509Certificate(cert!).checkPrivateKey(createPrivateKey(key!))) {
    throw new Error(`${paths.certPath} does not match ${paths.keyPath}; run npm run certs`);
  }
  return { ca: ca!, cert: cert!, key: key! };
}
