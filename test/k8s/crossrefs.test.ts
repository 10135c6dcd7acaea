import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { FACTORY_SETTINGS, loadFactoryConfig } from '../../jwt-factory/config.js';
import { parseOidcConfig, type OidcConfig } from '../../jwt-factory/oidc/config.js';
import { loadServiceConfig, type ServiceName } from '../../app/config.js';
import { buildMeshRules, peerPrincipal, requestPrincipal } from '../../mesh/istio/rules.js';
import { BASE, OVERLAY, named, ofKind } from './manifests.js';
import { kustomizeBuild, type K8sObject } from './kustomize.js';
import { mountFor, resolvePort, selects, settingsOf, type ConfigMap, type Deployment, type IstioPolicy, type Service } from './workloads.js';

const base = kustomizeBuild(BASE);
const overlay = kustomizeBuild(OVERLAY);
const deployments = ofKind<Deployment>(base, 'Deployment');
/** Every pod template: the Deployments and the key database's StatefulSet. */
const workloads = [...deployments, ...ofKind<Deployment>(base, 'StatefulSet')];
const services = ofKind<Service>(base, 'Service');
const configMaps = ofKind<ConfigMap>(base, 'ConfigMap');
const NAMESPACE = 'jwt-suite';
const SERVICES: ServiceName[] = ['servicea', 'serviceb', 'servicec'];

/** The settings a service process really sees in the pod: its ConfigMap (the image carries no app/.<service>.env). */
const effectiveEnv = (name: ServiceName) => settingsOf(named(base, 'Deployment', name), configMaps);

/** The factory's OIDC_CONFIG as it reads it: the file of the ConfigMap mounted at that path. */
function oidcConfigOf(factory: Deployment, maps: ConfigMap[] = configMaps): OidcConfig {
  const file = loadFactoryConfig(settingsOf(factory, maps)).OIDC_CONFIG!;
  const c = factory.spec.template.spec.containers[0]!;
  const name = factory.spec.template.spec.volumes?.find((v) => v.name === mountFor(c, file)?.name)?.configMap?.name;
  return parseOidcConfig(maps.find((m) => m.metadata.name === name)!.data[path.basename(file)]!, file);
}

/**
 * The keys a loader ignores: a known key changes the loaded config for at least one other valid
 * value; the loaders skip unknown keys silently, so those change nothing whatever their value.
 */
function ignoredKeys(load: (env: Record<string, string>) => unknown, data: Record<string, string>): string[] {
  const before = JSON.stringify(load(data));
  return Object.keys(data).filter((key) => {
    const v = data[key]!;
    const candidates = [`${v}1`, `${v}/x`, '1', 'debug', 'dir', 'RS384', 'warn', '127.0.0.2', ''];
    return !candidates.some((c) => {
      try {
        return JSON.stringify(load({ ...data, [key]: c })) !== before;
      } catch {
        return false;
      }
    });
  });
}

describe('k8s cross-references: workloads, Services, ports, probes', () => {
  it('ships one workload, Service and ServiceAccount per workload: four Deployments and the key database StatefulSet', () => {
    const names = ['jwt-factory', 'jwt-factory-postgres', ...SERVICES];
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(['jwt-factory', ...SERVICES]);
    expect(workloads.map((d) => d.metadata.name).sort()).toEqual(names);
    expect(services.map((s) => s.metadata.name).sort()).toEqual(names);
    expect(ofKind(base, 'ServiceAccount').map((s) => s.metadata.name).sort()).toEqual(names);
  });

  it.each(workloads.map((d) => [d.metadata.name, d] as const))('%s: its selector matches its pod labels and it runs as its own service account', (name, d) => {
    expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
    expect(d.spec.template.spec.serviceAccountName).toBe(name);
    named(base, 'ServiceAccount', name);
  });

  it.each(services.map((s) => [s.metadata.name, s] as const))('%s: selects exactly its Deployment, and every targetPort is a containerPort', (name, s) => {
    const selected = workloads.filter((d) => selects(s.spec.selector, d.spec.template.metadata.labels));
    expect(selected.map((d) => d.metadata.name)).toEqual([name]);
    const container = selected[0]!.spec.template.spec.containers[0]!;
    for (const port of s.spec.ports) {
      const target = resolvePort(container, port.targetPort ?? port.port);
      expect(target, `${name} port ${port.name}`).toBeDefined();
      // The Service port is the container port, so URLs in the ConfigMaps work in and out of the pod.
      expect(target).toBe(port.port);
    }
  });

  it('a Service whose targetPort names no container port is caught', () => {
    const d = named<Deployment>(base, 'Deployment', 'serviceb');
    expect(resolvePort(d.spec.template.spec.containers[0]!, 'htps')).toBeUndefined();
  });

  it.each(deployments.map((d) => [d.metadata.name, d] as const))('%s: probes aim at a container port and the route the process serves', (name, d) => {
    const c = d.spec.template.spec.containers[0]!;
    const expected = name === 'jwt-factory' ? { readiness: '/readyz', liveness: '/healthz' } : { readiness: '/hello', liveness: '/hello' };
    expect(c.readinessProbe?.httpGet?.path).toBe(expected.readiness);
    expect(c.livenessProbe?.httpGet?.path).toBe(expected.liveness);
    expect(resolvePort(c, c.readinessProbe!.httpGet!.port)).toBe(Number(settingsOf(d, configMaps).PORT));
    expect(resolvePort(c, c.livenessProbe!.httpGet!.port)).toBe(Number(settingsOf(d, configMaps).PORT));
  });

  it.each(workloads.map((d) => [d.metadata.name, d] as const))('%s: restricted pod security, requests and limits, no API token mounted by default', (name, d) => {
    const pod = d.spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const c of pod.containers) {
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
      for (const kind of ['requests', 'limits'] as const) expect(Object.keys(c.resources?.[kind] ?? {}).sort()).toEqual(['cpu', 'memory']);
      // The suite's image, or the key database's plain postgres image pinned to a release.
      if (name === 'jwt-factory-postgres') expect(c.image).toMatch(/^postgres:\d+\.\d+-bookworm$/);
      else expect(c.image).toBe('jwt-suite:1.0.0');
    }
    for (const v of pod.volumes ?? []) {
      // Secrets and projected tokens: readable by owner and group (fsGroup) only, never by others.
      if (v.secret) expect((v.secret.defaultMode ?? 0o644) & 0o007, v.name).toBe(0);
      if (v.projected) expect((v.projected.defaultMode ?? 0o644) & 0o007, v.name).toBe(0);
    }
  });

  it('the factory runs 2+ replicas on one PostgreSQL: KEY_STORE names the Service, its user and database are the StatefulSet\'s, the password the same Secret', () => {
    const d = named<Deployment>(base, 'Deployment', 'jwt-factory');
    expect(d.spec.replicas).toBeGreaterThanOrEqual(2);
    const c = d.spec.template.spec.containers[0]!;
    const config = loadFactoryConfig(settingsOf(d, configMaps));
    const url = new URL(config.KEY_STORE);
    expect(url.protocol).toBe('postgres:');
    expect(url.password).toBe('');
    const [svc, ns] = url.hostname.split('.');
    expect(ns).toBe(NAMESPACE);
    const service = named<Service>(base, 'Service', svc!);
    expect(service.spec.ports.map((p) => p.port)).toContain(Number(url.port));
    const db = named<Deployment>(base, 'StatefulSet', 'jwt-factory-postgres');
    expect(selects(service.spec.selector, db.spec.template.metadata.labels)).toBe(true);
    const pgEnv = Object.fromEntries((db.spec.template.spec.containers[0]!.env ?? []).map((e) => [e.name, e]));
    expect([pgEnv.POSTGRES_USER?.value, pgEnv.POSTGRES_DB?.value]).toEqual([url.username, url.pathname.slice(1)]);
    const password = (c.env ?? []).find((e) => e.name === 'PGPASSWORD')?.valueFrom?.secretKeyRef;
    expect(password).toEqual({ name: 'jwt-factory-postgres', key: 'password' });
    expect(pgEnv.POSTGRES_PASSWORD?.valueFrom?.secretKeyRef).toEqual(password);
    // The data survives the pod: a PersistentVolumeClaim per replica, mounted where PGDATA lives.
    const claims = (db.spec as unknown as { volumeClaimTemplates: Array<{ metadata: { name: string } }> }).volumeClaimTemplates;
    expect(mountFor(db.spec.template.spec.containers[0]!, pgEnv.PGDATA!.value!)?.name).toBe(claims[0]!.metadata.name);
  });

  it('the factory seals keys with the encryption-key Secret, reads OIDC_CONFIG from its ConfigMap, keeps state on an emptyDir, rotates on its own', () => {
    const d = named<Deployment>(base, 'Deployment', 'jwt-factory');
    const c = d.spec.template.spec.containers[0]!;
    const config = loadFactoryConfig(settingsOf(d, configMaps));
    const volume = (dir: string) => d.spec.template.spec.volumes?.find((v) => v.name === mountFor(c, dir)?.name);
    expect(mountFor(c, config.KEY_ENCRYPTION_KEY_FILE!)?.readOnly).toBe(true);
    expect(volume(config.KEY_ENCRYPTION_KEY_FILE!)?.secret?.secretName).toBe('jwt-factory-encryption-key');
    expect(path.basename(config.KEY_ENCRYPTION_KEY_FILE!)).toBe('key');
    const oidcMap = volume(config.OIDC_CONFIG!)?.configMap?.name;
    expect(configMaps.find((m) => m.metadata.name === oidcMap)?.data[path.basename(config.OIDC_CONFIG!)]).toBeDefined();
    expect(volume(config.KEYS_DIR)?.emptyDir).toBeDefined();
    expect(mountFor(c, config.KEYS_DIR)?.readOnly).not.toBe(true);
    expect(config.ROTATION_INTERVAL).toBeGreaterThan(config.ROTATION_PUBLISH_AHEAD);
    expect([config.HOST, config.ISSUE_AUTH]).toEqual(['0.0.0.0', 'client']);
    // No Secret of the old model: keys come from the database, not from a mounted key folder.
    expect(d.spec.template.spec.volumes?.map((v) => v.secret?.secretName).filter(Boolean)).toEqual(['jwt-factory-encryption-key']);
  });

  it('every setting the manifests name exists: ConfigMap keys and env names are settings of the process, or the driver\'s and the image\'s own', () => {
    const factory = named<Deployment>(base, 'Deployment', 'jwt-factory');
    expect(Object.keys(settingsOf(factory, configMaps)).filter((k) => !FACTORY_SETTINGS.includes(k))).toEqual([]);
    // PGPASSWORD is libpq's, read by the pg driver when the KEY_STORE URL carries no password.
    expect((factory.spec.template.spec.containers[0]!.env ?? []).map((e) => e.name).filter((k) => !FACTORY_SETTINGS.includes(k))).toEqual(['PGPASSWORD']);
    for (const svc of SERVICES) {
      const d = named<Deployment>(base, 'Deployment', svc);
      expect(d.spec.template.spec.containers[0]!.env ?? []).toEqual([]);
    }
    // The postgres image's own variables (docker-library/postgres docker-entrypoint.sh) and libpq's PGDATA.
    const db = named<Deployment>(base, 'StatefulSet', 'jwt-factory-postgres');
    expect((db.spec.template.spec.containers[0]!.env ?? []).map((e) => e.name).sort()).toEqual(['PGDATA', 'POSTGRES_DB', 'POSTGRES_INITDB_ARGS', 'POSTGRES_PASSWORD', 'POSTGRES_USER']);
  });

  it("servicea's credential is its projected token: FACTORY_ASSERTION_FILE is the token path of a serviceAccountToken volume, short-lived, for the audience the factory's trusted issuer demands", () => {
    const d = named<Deployment>(base, 'Deployment', 'servicea');
    const c = d.spec.template.spec.containers[0]!;
    const config = loadServiceConfig('servicea', effectiveEnv('servicea'));
    expect(config.factoryCredential?.kind).toBe('assertion');
    const file = (config.factoryCredential as { file: string }).file;
    const mount = mountFor(c, file);
    expect(mount?.readOnly).toBe(true);
    const sources = d.spec.template.spec.volumes?.find((v) => v.name === mount!.name)?.projected?.sources ?? [];
    const token = sources.find((src) => src.serviceAccountToken)?.serviceAccountToken;
    expect(path.join(mount!.mountPath, token!.path)).toBe(file);
    // 600 s is the shortest lifetime the API server issues; an hour is what short means here.
    expect(token!.expirationSeconds).toBeGreaterThanOrEqual(600);
    expect(token!.expirationSeconds).toBeLessThanOrEqual(3600);
    const oidc = oidcConfigOf(named<Deployment>(base, 'Deployment', 'jwt-factory'));
    const [trusted, ...more] = [...oidc.trustedIssuers.values()];
    expect(more).toEqual([]);
    expect(trusted!.audience).toBe(token!.audience);
    expect(trusted!.subjects.get(`system:serviceaccount:${NAMESPACE}:${d.spec.template.spec.serviceAccountName}`)).toBe('servicea');
    const client = oidc.clients.get('servicea')!;
    // The jwt-bearer grant needs no client authentication; the client's own method is its mesh identity.
    expect(client.grant_types).toContain('urn:ietf:params:oauth:grant-type:jwt-bearer');
    expect(client.token_endpoint_auth_method).toBe('tls_client_auth');
    // servicea asks its access token for the factory itself (aud = ISSUER) and keeps it past the
    // projected token's life, so the next exchange finds a token the kubelet has already replaced.
    const factory = loadFactoryConfig(settingsOf(named(base, 'Deployment', 'jwt-factory'), configMaps));
    expect(config.issuer).toBe(factory.ISSUER);
    expect(client.audiences).toEqual(expect.arrayContaining(['serviceb', 'servicec', factory.ISSUER]));
    expect(client.access_token_lifetime).toBeGreaterThan(token!.expirationSeconds!);
    expect(client.access_token_lifetime).toBeLessThanOrEqual(factory.MAX_TOKEN_TTL);
  });

  it("the factory reads the cluster's own JWKS with its own API token and the cluster CA, and RBAC lets exactly that account read it", () => {
    const d = named<Deployment>(base, 'Deployment', 'jwt-factory');
    const c = d.spec.template.spec.containers[0]!;
    const [trusted] = [...oidcConfigOf(d).trustedIssuers.values()];
    expect(trusted!.issuer).toBe('https://kubernetes.default.svc.cluster.local');
    expect(new URL(trusted!.jwksUri!).pathname).toBe('/openid/v1/jwks');
    const mount = mountFor(c, trusted!.jwksTokenFile!);
    expect(mountFor(c, trusted!.jwksCaFile!)?.name).toBe(mount?.name);
    const sources = d.spec.template.spec.volumes?.find((v) => v.name === mount!.name)?.projected?.sources ?? [];
    const token = sources.find((src) => src.serviceAccountToken)!.serviceAccountToken!;
    // No audience: the API server's own, the only one it accepts.
    expect(token.audience).toBeUndefined();
    expect(path.join(mount!.mountPath, token.path)).toBe(trusted!.jwksTokenFile);
    const ca = sources.find((src) => src.configMap)!.configMap!;
    expect(ca.name).toBe('kube-root-ca.crt');
    expect(path.join(mount!.mountPath, ca.items![0]!.path)).toBe(trusted!.jwksCaFile);
    const [binding, ...more] = ofKind<K8sObject & { roleRef: Record<string, string>; subjects: Array<Record<string, string>> }>(base, 'ClusterRoleBinding');
    expect(more).toEqual([]);
    expect(binding!.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' });
    expect(binding!.subjects).toEqual([{ kind: 'ServiceAccount', name: d.spec.template.spec.serviceAccountName, namespace: NAMESPACE }]);
  });

  it('no client secret of a service is stored anywhere in the manifests: the OIDC clients need none, and no Secret is generated', () => {
    const oidc = oidcConfigOf(named<Deployment>(base, 'Deployment', 'jwt-factory'));
    const workloadNames = new Set(deployments.map((d) => d.metadata.name));
    for (const client of oidc.clients.values()) {
      // A workload's client has no secret at all; a user's client (cli) and the users only a scrypt hash.
      if (workloadNames.has(client.client_id)) expect([client.client_id, client.secret]).toEqual([client.client_id, undefined]);
      else expect([client.client_id, client.secret?.kind]).toEqual([client.client_id, 'scrypt']);
    }
    for (const user of oidc.users.values()) expect([user.username, user.secret.kind]).toEqual([user.username, 'scrypt']);
    expect(ofKind(base, 'Secret')).toEqual([]);
    expect(JSON.stringify(base)).not.toMatch(/servicea-secret|FACTORY_CLIENT_SECRET/);
  });

  it('a PodDisruptionBudget keeps at least one factory replica, and selects exactly the factory pods', () => {
    const [pdb, ...more] = ofKind<K8sObject & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }>(base, 'PodDisruptionBudget');
    expect(more).toEqual([]);
    expect(pdb!.spec.minAvailable).toBe(1);
    expect(deployments.filter((d) => selects(pdb!.spec.selector.matchLabels, d.spec.template.metadata.labels)).map((d) => d.metadata.name)).toEqual(['jwt-factory']);
    expect(named<Deployment>(base, 'Deployment', 'jwt-factory').spec.replicas).toBeGreaterThan(pdb!.spec.minAvailable);
  });

  it.each(SERVICES)('%s: TLS material from the Secret at CERTS_DIR, and its own keys on a writable emptyDir', (name) => {
    const d = named<Deployment>(base, 'Deployment', name);
    const c = d.spec.template.spec.containers[0]!;
    const config = loadServiceConfig(name, effectiveEnv(name));
    const certs = mountFor(c, config.certsDir);
    expect(certs?.readOnly).toBe(true);
    expect(d.spec.template.spec.volumes?.find((v) => v.name === certs!.name)?.secret?.secretName).toBe(`${name}-tls`);
    // The root filesystem is read-only: whatever the service writes needs a writable volume.
    const keys = mountFor(c, config.serviceKeysDir);
    expect(keys?.readOnly).not.toBe(true);
    expect(d.spec.template.spec.volumes?.find((v) => v.name === keys!.name)?.emptyDir).toBeDefined();
  });
});

describe('k8s cross-references: settings', () => {
  it("the factory's ConfigMap loads through loadFactoryConfig, and it knows every key", () => {
    const data = settingsOf(named(base, 'Deployment', 'jwt-factory'), configMaps);
    const config = loadFactoryConfig(data);
    expect(Object.keys(data).filter((k) => !(k in config))).toEqual([]);
    expect(config.PORT).toBe(5555);
    expect(new URL(config.PUBLIC_URL).hostname).toBe(`jwt-factory.${NAMESPACE}.svc.cluster.local`);
  });

  it.each(SERVICES)("%s's ConfigMap loads through loadServiceConfig, and it uses every key", (name) => {
    const data = settingsOf(named(base, 'Deployment', name), configMaps);
    expect(() => loadServiceConfig(name, data)).not.toThrow();
    expect(ignoredKeys((env) => loadServiceConfig(name, env), data)).toEqual([]);
  });

  it('a ConfigMap key the service does not know is caught', () => {
    const data = { ...settingsOf(named(base, 'Deployment', 'serviceb'), configMaps), FACTORY_ULR: 'http://x:1' };
    expect(ignoredKeys((env) => loadServiceConfig('serviceb', env), data)).toEqual(['FACTORY_ULR']);
  });

  it.each(SERVICES)('%s, with its ConfigMap alone (the image has no .env file), points at no localhost address', (name) => {
    const config = loadServiceConfig(name, effectiveEnv(name));
    const urls = [config.factoryUrl, ...Object.values(config.urls), ...Object.values(config.httpsUrls)];
    for (const url of urls) expect(new URL(url).hostname, url).toMatch(new RegExp(`^[a-z-]+\\.${NAMESPACE}\\.svc\\.cluster\\.local$`));
    expect(config.host).toBe('0.0.0.0');
  });

  it.each(SERVICES)("%s's endpoints name Services that exist, on ports they expose with the right protocol", (name) => {
    const config = loadServiceConfig(name, effectiveEnv(name));
    const endpoints = [
      { url: config.factoryUrl, scheme: 'http:' },
      ...Object.values(config.urls).map((url) => ({ url, scheme: 'http:' })),
      ...Object.values(config.httpsUrls).map((url) => ({ url, scheme: 'https:' })),
    ];
    for (const { url, scheme } of endpoints) {
      const u = new URL(url);
      expect(u.protocol, url).toBe(scheme);
      const [svc, ns] = u.hostname.split('.');
      expect(ns).toBe(NAMESPACE);
      const service = named<Service>(base, 'Service', svc!);
      const port = service.spec.ports.find((p) => p.port === Number(u.port));
      expect(port, url).toBeDefined();
      expect(port!.appProtocol).toBe(scheme.replace(':', ''));
    }
  });

  it.each(SERVICES)("%s listens on the ports its Deployment and Service declare", (name) => {
    const config = loadServiceConfig(name, effectiveEnv(name));
    const c = named<Deployment>(base, 'Deployment', name).spec.template.spec.containers[0]!;
    expect(resolvePort(c, 'http')).toBe(config.port);
    expect(resolvePort(c, 'https')).toBe(config.httpsPort);
  });
});

describe('k8s cross-references: Istio rules', () => {
  const factory = loadFactoryConfig(settingsOf(named(base, 'Deployment', 'jwt-factory'), configMaps));
  const ras = ofKind<IstioPolicy>(overlay, 'RequestAuthentication');
  const aps = ofKind<IstioPolicy>(overlay, 'AuthorizationPolicy');
  const overlayDeployments = [...ofKind<Deployment>(overlay, 'Deployment'), ...ofKind<Deployment>(overlay, 'StatefulSet')];
  const serviceAccounts = new Set(ofKind(overlay, 'ServiceAccount').map((s) => peerPrincipal(NAMESPACE, s.metadata.name)));

  it("servicea's token exchange authenticates with its mesh identity: the factory trusts XFCC in the mesh only, from its own sidecar", () => {
    const overlayConfigMaps = ofKind<ConfigMap>(overlay, 'ConfigMap');
    const inMesh = loadFactoryConfig(settingsOf(named(overlay, 'Deployment', 'jwt-factory'), overlayConfigMaps));
    const factoryAccount = named<Deployment>(overlay, 'Deployment', 'jwt-factory').spec.template.spec.serviceAccountName!;
    expect([inMesh.TRUST_XFCC, inMesh.XFCC_BY]).toEqual([true, `spiffe://${peerPrincipal(NAMESPACE, factoryAccount)}`]);
    // Without the mesh nothing rewrites the header: the base refuses it.
    expect(factory.TRUST_XFCC).toBe(false);
    // The merge changes the factory's settings only: the rest of the overlay equals the base.
    expect({ ...inMesh, TRUST_XFCC: false, XFCC_BY: undefined }).toEqual({ ...factory, XFCC_BY: undefined });
    const serviceaAccount = named<Deployment>(overlay, 'Deployment', 'servicea').spec.template.spec.serviceAccountName!;
    const client = oidcConfigOf(named<Deployment>(overlay, 'Deployment', 'jwt-factory'), overlayConfigMaps).clients.get('servicea')!;
    expect(client.tls_client_auth_san_uri).toBe(`spiffe://${peerPrincipal(NAMESPACE, serviceaAccount)}`);
    expect(client.grant_types).toContain('urn:ietf:params:oauth:grant-type:token-exchange');
    const servicea = loadServiceConfig('servicea', settingsOf(named(overlay, 'Deployment', 'servicea'), overlayConfigMaps));
    expect(servicea.oidcClient).toEqual({ id: 'servicea', secret: undefined, method: 'tls_client_auth' });
    // The sidecar must reach servicea's exchange: the rules let servicea's identity POST /token.
    const token = named<IstioPolicy>(overlay, 'AuthorizationPolicy', 'jwt-factory-token-servicea');
    expect(token.spec.rules).toEqual([{ from: [{ source: { principals: [peerPrincipal(NAMESPACE, serviceaAccount)] } }], to: [{ operation: { methods: ['POST'], paths: ['/token'] } }] }]);
  });

  it("scenario 6's id token is for cli, the password-grant client of the ConfigMap, whose audience serviceb checks", () => {
    const oidc = oidcConfigOf(named<Deployment>(base, 'Deployment', 'jwt-factory'));
    const serviceb = loadServiceConfig('serviceb', effectiveEnv('serviceb'));
    expect(oidc.clients.get(serviceb.idTokenAudience)?.grant_types).toContain('password');
    expect(oidc.users.size).toBeGreaterThan(0);
    expect(ras.find((r) => r.spec.selector.matchLabels.app === 'serviceb')!.spec.jwtRules[0].audiences).toContain(serviceb.idTokenAudience);
  });

  it('mTLS is STRICT for the whole namespace', () => {
    const pas = ofKind<IstioPolicy>(overlay, 'PeerAuthentication');
    expect(pas).toHaveLength(1);
    expect(pas[0]!.metadata.namespace).toBe(NAMESPACE);
    expect(pas[0]!.spec).toEqual({ mtls: { mode: 'STRICT' } });
  });

  it('serviceb and servicec each have a RequestAuthentication whose issuer is the factory ISSUER and whose JWKS is the factory', () => {
    expect(ras.map((r) => r.spec.selector.matchLabels.app).sort()).toEqual(['serviceb', 'servicec']);
    for (const ra of ras) {
      const [rule, ...more] = ra.spec.jwtRules;
      expect(more).toEqual([]);
      expect(rule.issuer).toBe(factory.ISSUER);
      const uri = new URL(rule.jwksUri);
      expect(`${uri.protocol}//${uri.host}`).toBe(factory.PUBLIC_URL);
      const service = named<Service>(overlay, 'Service', uri.hostname.split('.')[0]!);
      expect(service.spec.ports.map((p) => p.port)).toContain(Number(uri.port));
      // serviceb also takes the OIDC provider's id tokens (scenario 6): both keys, no others.
      // Both also take the OIDC provider's user tokens (scenario 6, the gateway login): both keys, no others.
      expect(uri.pathname).toBe('/keys/servicea,oidc/jwks.json');
      // The app verifies the token again: Envoy must forward it.
      expect(rule.forwardOriginalToken).toBe(true);
      // servicea asks the factory for aud = the receiver's name (app/scenarios.ts); serviceb also
      // takes id tokens for the password-grant client cli (scenario 6, jwt-factory/oidc.demo.yaml).
      const app = ra.spec.selector.matchLabels.app;
      expect(rule.audiences).toEqual(app === 'serviceb' ? [app, 'cli', 'webui'] : [app, 'webui']);
    }
  });

  it('there is an allow-nothing policy for the namespace', () => {
    const allowNothing = aps.filter((a) => Object.keys(a.spec).length === 0);
    expect(allowNothing.map((a) => a.metadata.namespace)).toEqual([NAMESPACE]);
  });

  it('every policy selects a workload that exists, names identities that exist, and ports that workload has', () => {
    for (const ap of [...aps, ...ras]) {
      expect(ap.metadata.namespace).toBe(NAMESPACE);
      const selector = ap.spec.selector?.matchLabels as Record<string, string> | undefined;
      if (!selector) continue;
      const selected = overlayDeployments.filter((d) => selects(selector, d.spec.template.metadata.labels));
      expect(selected, ap.metadata.name).toHaveLength(1);
      for (const rule of ap.spec.rules ?? []) {
        for (const from of rule.from ?? []) for (const p of from.source.principals ?? []) expect(serviceAccounts.has(p), `${ap.metadata.name}: ${p}`).toBe(true);
        for (const to of rule.to ?? []) {
          for (const port of to.operation.ports ?? []) expect(resolvePort(selected[0]!.spec.template.spec.containers[0]!, Number(port)), `${ap.metadata.name}: ${port}`).toBe(Number(port));
        }
      }
    }
  });

  it.each(['serviceb', 'servicec'])('%s admits servicea only with its mTLS identity AND its token on the HTTP port', (svc) => {
    const ap = named<IstioPolicy>(overlay, 'AuthorizationPolicy', `${svc}-allow-servicea`);
    expect(ap.spec.action).toBe('ALLOW');
    expect(ap.spec.rules).toHaveLength(1);
    // One source with both fields: Istio ANDs fields of one source and ORs separate sources.
    expect(ap.spec.rules[0].from).toEqual([{ source: { principals: [peerPrincipal(NAMESPACE, 'servicea')], requestPrincipals: [requestPrincipal(factory.ISSUER, 'servicea')] } }]);
    expect(requestPrincipal(factory.ISSUER, 'servicea')).toBe('https://jwt-factory//servicea');
  });

  it.each(['serviceb', 'servicec'])('the committed rules for %s are what npm run mesh-rules generates', (svc) => {
    const port = Number(settingsOf(named(base, 'Deployment', svc), configMaps).PORT);
    const users = { userKey: 'oidc', userAudiences: svc === 'serviceb' ? ['cli', 'webui'] : ['webui'] };
    const generated = buildMeshRules({ key: 'servicea', audiences: [svc], issuer: factory.ISSUER, namespace: NAMESPACE, factoryUrl: factory.PUBLIC_URL, port, ...users });
    for (const g of generated) expect(named<IstioPolicy>(overlay, g.kind, g.metadata.name).spec, g.metadata.name).toEqual(g.spec);
  });

  it('the factory issues tokens only to the service whose identity matches the keyId', () => {
    const ap = named<IstioPolicy>(overlay, 'AuthorizationPolicy', 'jwt-factory-issue-own-key');
    const pairs = ap.spec.rules.map((r: any) => [r.from[0].source.principals, r.to[0].operation.paths, r.to[0].operation.methods]);
    expect(pairs).toEqual(SERVICES.map((s) => [[peerPrincipal(NAMESPACE, s)], [`/issueToken/${s}`], ['POST']]));
  });

  it('no policy lets anyone create, rotate or dump keys at the factory', () => {
    const factoryPaths = aps
      .filter((a) => a.spec.selector?.matchLabels?.app === 'jwt-factory')
      .flatMap((a) => a.spec.rules.flatMap((r: any) => r.to.flatMap((t: any) => t.operation.paths as string[])));
    expect(factoryPaths.length).toBeGreaterThan(0);
    for (const p of factoryPaths) expect(p).not.toMatch(/^\/keys\/[^/]+$|rotate|dump|\*/);
  });
});
