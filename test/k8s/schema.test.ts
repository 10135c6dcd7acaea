import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseAllDocuments } from 'yaml';
import { BASE, K8S, OVERLAY, WEBUI, readYamlDocuments, validateObject, yamlFiles } from './manifests.js';
import { configMapHash, hasKubectlKustomize, kubectlKustomize, kustomizeBuild, objectKey, type K8sObject } from './kustomize.js';

const builds: Record<string, string> = { base: BASE, istio: OVERLAY, webui: WEBUI };

describe('k8s manifests against the Kubernetes and Istio schemas', () => {
  // Kubernetes objects only: not the kustomizations, nor the settings files under config/ that become ConfigMap data.
  const files = yamlFiles(K8S).filter((f) => path.basename(f) !== 'kustomization.yaml' && path.basename(path.dirname(f)) !== 'config');

  it('ships manifests in base, the istio overlay and the istiod install settings', () => {
    const rel = files.map((f) => path.relative(K8S, f));
    expect(rel).toEqual(expect.arrayContaining(['base/jwt-factory.yaml', 'istio/authorizationpolicy.yaml', 'install/istio-operator.yaml']));
  });

  it.each(files.map((f) => [path.relative(K8S, f), f]))('%s: every document parses and validates', (_rel, file) => {
    const docs = readYamlDocuments(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) expect(() => validateObject(doc)).not.toThrow();
  });

  it.each(Object.entries(builds))('the kustomize build of %s validates object by object', (_name, dir) => {
    const objects = kustomizeBuild(dir);
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) expect(() => validateObject(o), objectKey(o)).not.toThrow();
    const keys = objects.map(objectKey);
    expect(new Set(keys).size, 'no object appears twice').toBe(keys.length);
  });

  it.each(yamlFiles(K8S).map((f) => [path.relative(K8S, f), f]))('%s reads the same as YAML 1.1 (kubectl) and YAML 1.2', (_rel, file) => {
    // kubectl and kustomize read YAML 1.1: 0440 is octal there and 440 here, `yes` a boolean there.
    const text = readFileSync(file, 'utf8');
    const as11 = parseAllDocuments(text, { version: '1.1' }).map((d) => d.toJS());
    const as12 = parseAllDocuments(text, { version: '1.2' }).map((d) => d.toJS());
    expect(as11).toEqual(as12);
  });

  it('refuses an object that breaks its schema (a port that is not a number)', () => {
    const [deployment] = readYamlDocuments(path.join(BASE, 'jwt-factory.yaml')) as Array<K8sObject & { spec: any }>;
    deployment!.spec.template.spec.containers[0].ports[0].containerPort = 'http';
    expect(() => validateObject(deployment!)).toThrow(/containerPort must be integer/);
  });

  it('refuses an Istio object that breaks its schema (a PeerAuthentication mode that does not exist)', () => {
    const [pa] = readYamlDocuments(path.join(OVERLAY, 'peerauthentication.yaml')) as Array<K8sObject & { spec: any }>;
    pa!.spec.mtls.mode = 'STRICTEST';
    expect(() => validateObject(pa!)).toThrow(/mode/);
  });

  it('refuses a kind it has no schema for', () => {
    expect(() => validateObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } })).toThrow(/no schema for v1 Pod/);
  });
});

describe('kustomize builds', () => {
  it('the base puts every namespaced object in jwt-suite and pins the image', () => {
    const objects = kustomizeBuild(BASE);
    for (const o of objects.filter((x) => !['Namespace', 'ClusterRoleBinding'].includes(x.kind))) expect(o.metadata.namespace, objectKey(o)).toBe('jwt-suite');
    expect(objects.find((o) => o.kind === 'ClusterRoleBinding')?.metadata.namespace).toBeUndefined();
    const images = objects.filter((o) => o.kind === 'Deployment').map((o: any) => o.spec.template.spec.containers[0].image);
    expect(new Set(images)).toEqual(new Set(['jwt-suite:1.0.0']));
  });

  it('the base generates hashed ConfigMaps and every Deployment reads its own by the hashed name', () => {
    const objects = kustomizeBuild(BASE);
    const configMaps = new Set(objects.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name));
    for (const d of objects.filter((o) => o.kind === 'Deployment') as any[]) {
      const ref = d.spec.template.spec.containers[0].envFrom[0].configMapRef.name as string;
      expect(ref).toMatch(new RegExp(`^${d.metadata.name}-config-[a-z0-9]{10}$`));
      expect(configMaps.has(ref), `${d.metadata.name} reads ${ref}`).toBe(true);
    }
  });

  it('computes the ConfigMap name suffix exactly as kustomize does', () => {
    // Read off `kubectl kustomize` (kustomize v5.5.0) for literals a=b and u=<&>: the hash covers
    // Go's JSON encoding, which escapes <, > and &.
    expect(configMapHash({ a: 'b', u: '<&>' })).toBe('8tgmk9kb5b');
    expect(configMapHash({ a: 'b', u: '<&>!' })).not.toBe('8tgmk9kb5b');
  });

  it('the overlay adds sidecar injection and the Istio objects to the base', () => {
    const objects = kustomizeBuild(OVERLAY);
    const ns = objects.find((o) => o.kind === 'Namespace')!;
    expect(ns.metadata.labels?.['istio-injection']).toBe('enabled');
    for (const d of objects.filter((o) => o.kind === 'Deployment') as any[]) {
      expect(JSON.parse(d.spec.template.metadata.annotations['proxy.istio.io/config'])).toEqual({ holdApplicationUntilProxyStarts: true });
    }
    expect(objects.map((o) => o.kind)).toEqual(expect.arrayContaining(['PeerAuthentication', 'RequestAuthentication', 'AuthorizationPolicy']));
  });

  it('the equivalent build refuses what it does not implement, rather than skipping it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kustomize-'));
    try {
      const write = (k: string) => writeFileSync(path.join(dir, 'kustomization.yaml'), k);
      write('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ncommonLabels: {a: b}\n');
      expect(() => kustomizeBuild(dir)).toThrow(/field commonLabels is not supported/);
      write('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../x]\n'.replace('../x', BASE));
      expect(kustomizeBuild(dir).length).toBeGreaterThan(10);
      write(`apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${BASE}]\npatches:\n  - target: {kind: Deployment}\n    patch: |-\n      kind: Deployment\n      spec: {template: {spec: {containers: [{name: x}]}}}\n`);
      expect(() => kustomizeBuild(dir)).toThrow(/list patches are not supported/);
      write(`apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${BASE}]\npatches:\n  - target: {kind: DaemonSet}\n    patch: |-\n      kind: DaemonSet\n`);
      expect(() => kustomizeBuild(dir)).toThrow(/matches nothing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Runs where kubectl with kustomize v4+ is installed (not on a fresh CI machine: Debian's
  // kubernetes-client 1.20 bundles kustomize v2, which cannot read these kustomizations).
  it.runIf(hasKubectlKustomize())('kubectl kustomize gives the same objects as the equivalent build, for base and overlay', () => {
    for (const dir of Object.values(builds)) {
      const real = kubectlKustomize(dir);
      const ours = new Map(kustomizeBuild(dir).map((o) => [objectKey(o), o]));
      expect(real.map(objectKey).sort()).toEqual([...ours.keys()].sort());
      for (const o of real) expect(ours.get(objectKey(o)), objectKey(o)).toEqual(o);
    }
  });
});
