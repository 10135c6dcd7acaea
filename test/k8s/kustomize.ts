import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * A kustomize build for the features our kustomizations use, so that `npm test` proves the base
 * and the overlay build without a kustomize binary: `resources` (files and directories),
 * `namespace`, `configMapGenerator` (env files and files, `behavior: merge` in an overlay, with kustomize's name-suffix hash and
 * the name references rewritten), `images`, and inline strategic-merge `patches` on maps. Anything else
 * in a kustomization is refused, so the checker cannot silently skip a feature. When a real
 * kustomize (v4 or newer) is on the machine, the tests compare both builds object by object.
 */

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
};

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'images', 'patches']);

/** Kinds that live outside any namespace (the ones we use). */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

/** Parses every YAML document of a file, refusing syntax errors and empty documents. */
export function readYamlDocuments(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  return docs.map((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${file} document ${i + 1}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || typeof value !== 'object') throw new Error(`${file} document ${i + 1} is not an object`);
    return value as K8sObject;
  });
}

/** Reads KEY=VALUE lines as kustomize does: `#` comments and blank lines skipped, values taken verbatim. */
export function readEnvFile(file: string): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [i, raw] of readFileSync(file, 'utf8').split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${file}:${i + 1}: expected KEY=VALUE`);
    data[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return data;
}

/** Go's encoding/json: sorted map keys, and <, >, & escaped as kustomize's hasher sees them. */
function goJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
  }
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  const entries = Object.keys(value).sort().map((k) => `${goJson(k)}:${goJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/**
 * kustomize's ConfigMap name suffix (api/hasher): sha256 of {data, kind, name} in Go's JSON, its
 * first 10 hex characters with 0 1 3 a e swapped for g h k m t. kustomize v5 looks the name up as
 * the single field "metadata/name", finds nothing and hashes "" (seen against kubectl 1.32), so
 * the suffix depends on the data only.
 */
export function configMapHash(data: Record<string, string>): string {
  const hex = createHash('sha256').update(goJson({ data, kind: 'ConfigMap', name: '' })).digest('hex');
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join('');
}

const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Strategic merge of maps; list patches are refused because none of our patches needs their merge keys. */
function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>, where: string): void {
  for (const [key, value] of Object.entries(patch)) {
    if (Array.isArray(value)) throw new Error(`${where}.${key}: list patches are not supported by this checker`);
    const current = target[key];
    if (isMap(value) && isMap(current)) mergePatch(current, value, `${where}.${key}`);
    else target[key] = structuredClone(value);
  }
}

/** The pod spec of a workload (Deployments and StatefulSets here), where image and ConfigMap references live. */
function podSpecsOf(obj: K8sObject): Array<Record<string, unknown>> {
  if (obj.kind !== 'Deployment' && obj.kind !== 'StatefulSet') return [];
  const template = (obj.spec as { template?: { spec?: Record<string, unknown> } } | undefined)?.template?.spec;
  return template ? [template] : [];
}

type Container = { image?: string; envFrom?: Array<{ configMapRef?: { name: string } }>; env?: Array<{ valueFrom?: { configMapKeyRef?: { name: string } } }> };

/** Containers and init containers of a pod spec. */
const containersOf = (pod: Record<string, unknown>) => [...((pod.containers as Container[]) ?? []), ...((pod.initContainers as Container[]) ?? [])];

/** Rewrites ConfigMap references in pod templates (envFrom, env valueFrom, volumes) to the hashed names. */
function renameConfigMapRefs(obj: K8sObject, names: Map<string, string>): void {
  const rename = (ref: { name: string } | undefined) => {
    if (ref && names.has(ref.name)) ref.name = names.get(ref.name)!;
  };
  for (const pod of podSpecsOf(obj)) {
    for (const c of containersOf(pod)) {
      for (const from of c.envFrom ?? []) rename(from.configMapRef);
      for (const e of c.env ?? []) rename(e.valueFrom?.configMapKeyRef);
    }
    for (const v of (pod.volumes as Array<{ configMap?: { name: string }; projected?: { sources?: Array<{ configMap?: { name: string } }> } }>) ?? []) {
      rename(v.configMap);
      for (const source of v.projected?.sources ?? []) rename(source.configMap);
    }
  }
}

/** An image reference without its tag or digest: `host:5000/x:1` names `host:5000/x`. */
const imageName = (image: string) => image.replace(/@.*$/, '').replace(/:[^/:]*$/, '');

/** The `images` transformer: replaces name and tag of matching container images. */
function setImages(obj: K8sObject, images: Array<{ name: string; newName?: string; newTag?: string }>): void {
  for (const pod of podSpecsOf(obj)) {
    for (const c of containersOf(pod)) {
      const rule = images.find((i) => i.name === imageName(String(c.image)));
      if (rule) c.image = `${rule.newName ?? rule.name}${rule.newTag ? `:${rule.newTag}` : ''}`;
    }
  }
}

/** Builds the kustomization in `dir` like `kubectl kustomize dir`, for the features listed above. */
export function kustomizeBuild(dir: string): K8sObject[] {
  const file = path.join(dir, 'kustomization.yaml');
  const [k] = readYamlDocuments(file) as unknown as Array<Record<string, any>>;
  if (!k || k.kind !== 'Kustomization') throw new Error(`${file} is not a Kustomization`);
  for (const field of Object.keys(k)) if (!SUPPORTED.has(field)) throw new Error(`${file}: field ${field} is not supported by this checker`);

  const objects: K8sObject[] = [];
  for (const entry of (k.resources as string[]) ?? []) {
    const target = path.resolve(dir, entry);
    objects.push(...(statSync(target).isDirectory() ? kustomizeBuild(target) : readYamlDocuments(target)));
  }

  const renamed = new Map<string, string>();
  for (const gen of (k.configMapGenerator as Array<Record<string, any>>) ?? []) {
    for (const field of Object.keys(gen)) if (!['name', 'envs', 'files', 'behavior'].includes(field)) throw new Error(`${file}: configMapGenerator.${field} is not supported by this checker`);
    if (gen.behavior !== undefined && gen.behavior !== 'create' && gen.behavior !== 'merge') throw new Error(`${file}: configMapGenerator.behavior ${gen.behavior} is not supported by this checker`);
    const data = Object.assign({}, ...((gen.envs as string[] | undefined) ?? []).map((e) => readEnvFile(path.resolve(dir, e)))) as Record<string, string>;
    // `files`: one key per file, its base name, the content verbatim.
    for (const f of (gen.files as string[] | undefined) ?? []) data[path.basename(f)] = readFileSync(path.resolve(dir, f), 'utf8');
    if (gen.behavior === 'merge') {
      // An overlay's merge: the base's generated map gets these keys (they win), then a new hash,
      // and every reference to the base's hashed name follows (kustomize's generator merge).
      const baseMap = objects.find((o) => o.kind === 'ConfigMap' && new RegExp(`^${gen.name}-[a-z0-9]{10}$`).test(o.metadata.name));
      if (!baseMap) throw new Error(`${file}: configMapGenerator ${gen.name} merges into no generated ConfigMap of the resources`);
      const merged = { ...(baseMap.data as Record<string, string>), ...data };
      const hashed = `${gen.name}-${configMapHash(merged)}`;
      renamed.set(baseMap.metadata.name, hashed);
      baseMap.metadata.name = hashed;
      baseMap.data = merged;
      continue;
    }
    const hashed = `${gen.name}-${configMapHash(data)}`;
    renamed.set(gen.name, hashed);
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: hashed }, data });
  }

  for (const p of (k.patches as Array<Record<string, any>>) ?? []) {
    if (typeof p.patch !== 'string' || !isMap(p.target)) throw new Error(`${file}: only inline patches with a target are supported by this checker`);
    const patch = readInline(p.patch);
    const matches = objects.filter((o) => o.kind === p.target.kind && (p.target.name === undefined || o.metadata.name === p.target.name));
    if (matches.length === 0) throw new Error(`${file}: patch target ${JSON.stringify(p.target)} matches nothing`);
    const { metadata, ...rest } = patch;
    for (const o of matches) {
      // The patch names its own object; with a target, kustomize keeps the target's name.
      const { name: _ignored, ...meta } = (metadata ?? {}) as Record<string, unknown>;
      mergePatch(o as Record<string, unknown>, { ...rest, metadata: meta }, `${o.kind}/${o.metadata.name}`);
    }
  }

  for (const o of objects) {
    if (typeof k.namespace === 'string' && !CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
    renameConfigMapRefs(o, renamed);
    if (Array.isArray(k.images)) setImages(o, k.images);
  }
  return objects;
}

function readInline(text: string): Record<string, unknown> {
  const docs = parseAllDocuments(text);
  if (docs.length !== 1 || docs[0]!.errors.length > 0) throw new Error('an inline patch must be one valid YAML document');
  return docs[0]!.toJS() as Record<string, unknown>;
}

/** The key under which kustomize outputs are compared. */
export const objectKey = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/**
 * True when kubectl with kustomize v4 or newer is installed. Older ones, such as Debian's
 * kubernetes-client 1.20 with kustomize v2.0.3, cannot read `envs`, `patches` or a directory in
 * `resources`.
 */
export function hasKubectlKustomize(): boolean {
  const version = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  const match = /Kustomize Version:\s*v(\d+)/.exec(version.stdout ?? '');
  return version.status === 0 && match !== null && Number(match[1]) >= 4;
}

/** `kubectl kustomize dir` parsed into objects (callers check hasKubectlKustomize first). */
export function kubectlKustomize(dir: string): K8sObject[] {
  const built = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${built.stderr}`);
  return parseAllDocuments(built.stdout).map((d) => d.toJS() as K8sObject);
}
