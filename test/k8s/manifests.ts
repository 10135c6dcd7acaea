import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Service } from 'kubernetes-models/v1/Service';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PeerAuthentication } from '@kubernetes-models/istio/security.istio.io/v1beta1/PeerAuthentication';
import { RequestAuthentication } from '@kubernetes-models/istio/security.istio.io/v1beta1/RequestAuthentication';
import { AuthorizationPolicy } from '@kubernetes-models/istio/security.istio.io/v1beta1/AuthorizationPolicy';
import { IstioOperator } from '@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator';
import { Gateway } from '@kubernetes-models/istio/networking.istio.io/v1beta1/Gateway';
import { VirtualService } from '@kubernetes-models/istio/networking.istio.io/v1beta1/VirtualService';
import { ROOT } from '../helpers/process.js';
import { readYamlDocuments, type K8sObject } from './kustomize.js';

export const K8S = path.join(ROOT, 'k8s');
export const BASE = path.join(K8S, 'base');
export const OVERLAY = path.join(K8S, 'istio');
/** The webui behind the ingress gateway with the login at the edge (on top of OVERLAY). */
export const WEBUI = path.join(K8S, 'webui');

type Validatable = { validate(): void };
type ModelClass = new (data: never) => Validatable;

/** The schema class for every apiVersion/kind the suite ships; anything else is a test failure. */
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace as unknown as ModelClass,
  'v1/ServiceAccount': ServiceAccount as unknown as ModelClass,
  'v1/Service': Service as unknown as ModelClass,
  'v1/ConfigMap': ConfigMap as unknown as ModelClass,
  'v1/Secret': Secret as unknown as ModelClass,
  'apps/v1/Deployment': Deployment as unknown as ModelClass,
  'apps/v1/StatefulSet': StatefulSet as unknown as ModelClass,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as unknown as ModelClass,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as ModelClass,
  'security.istio.io/v1beta1/PeerAuthentication': PeerAuthentication as unknown as ModelClass,
  'security.istio.io/v1beta1/RequestAuthentication': RequestAuthentication as unknown as ModelClass,
  'security.istio.io/v1beta1/AuthorizationPolicy': AuthorizationPolicy as unknown as ModelClass,
  'install.istio.io/v1alpha1/IstioOperator': IstioOperator as unknown as ModelClass,
  'networking.istio.io/v1beta1/Gateway': Gateway as unknown as ModelClass,
  'networking.istio.io/v1beta1/VirtualService': VirtualService as unknown as ModelClass,
};

/** Validates one object against its Kubernetes or Istio schema; throws with the schema's message. */
export function validateObject(obj: K8sObject): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind} (${obj.metadata?.name})`);
  if (typeof obj.metadata?.name !== 'string' || obj.metadata.name === '') throw new Error(`${obj.kind} without metadata.name`);
  new Model(obj as never).validate();
}

/** Every `*.yaml` under `dir` (recursively), kustomization files and the files ConfigMaps are generated from included. */
export function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

/** The objects of one kind from a list. */
export function ofKind<T = K8sObject>(objects: K8sObject[], kind: string): T[] {
  return objects.filter((o) => o.kind === kind) as T[];
}

/** The one object of `kind` named `name`; throws when missing. */
export function named<T = K8sObject>(objects: K8sObject[], kind: string, name: string): T {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} named ${name}`);
  return found as T;
}

export { readYamlDocuments };
