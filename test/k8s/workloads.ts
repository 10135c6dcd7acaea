import type { K8sObject } from './kustomize.js';

/** The fields of a Deployment the cross-reference checks read. */
export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
/** One source of a projected volume: a service-account token, or items of a ConfigMap. */
export interface ProjectedSource {
  serviceAccountToken?: { path: string; audience?: string; expirationSeconds?: number };
  configMap?: { name: string; items?: Array<{ key: string; path: string }> };
}
export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number; seccompProfile?: { type: string } };
  containers: Container[];
  volumes?: Array<{
    name: string;
    secret?: { secretName: string; defaultMode?: number };
    emptyDir?: object;
    configMap?: { name: string; items?: Array<{ key: string; path: string }> };
    projected?: { defaultMode?: number; sources: ProjectedSource[] };
  }>;
}
export type Deployment = K8sObject & {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
};
export type Service = K8sObject & {
  spec: { selector: Record<string, string>; ports: Array<{ name?: string; port: number; targetPort?: string | number; appProtocol?: string }> };
};
export type ConfigMap = K8sObject & { data: Record<string, string> };
export type IstioPolicy = K8sObject & { spec: Record<string, any> };

/** True when every selector label is on `labels`. */
export const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Resolves a port reference (a name or a number) against a container's ports; undefined when it names none. */
export function resolvePort(container: Container, ref: string | number | undefined): number | undefined {
  const port = (container.ports ?? []).find((p) => (typeof ref === 'number' ? p.containerPort === ref : p.name === ref || String(p.containerPort) === ref));
  return port?.containerPort;
}

/** The ConfigMap a Deployment's (single) container reads its settings from. */
export function settingsOf(deployment: Deployment, configMaps: ConfigMap[]): Record<string, string> {
  const name = deployment.spec.template.spec.containers[0]!.envFrom?.[0]?.configMapRef?.name;
  const cm = configMaps.find((c) => c.metadata.name === name);
  if (!cm) throw new Error(`${deployment.metadata.name} reads ConfigMap ${name}, which the build does not have`);
  return cm.data;
}

/** The mount that holds `dir` (exactly, or as its parent), if any. */
export function mountFor(container: Container, dir: string) {
  return (container.volumeMounts ?? []).find((m) => dir === m.mountPath || dir.startsWith(`${m.mountPath}/`));
}
