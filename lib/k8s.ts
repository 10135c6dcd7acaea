import { stringify } from 'yaml';

/** What the commands that print Kubernetes objects share (mesh-rules, k8s-secrets). */

/** RFC 1123 label: what Kubernetes accepts for namespaces, and what we accept for app labels. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Renders objects as a multi-document YAML stream, one object per document. */
export function renderYaml(objects: readonly object[], header?: string): string {
  const docs = objects.map((o) => stringify(o, { lineWidth: 0 }));
  return `${header ? `${header.split('\n').map((l) => `# ${l}`.trimEnd()).join('\n')}\n` : ''}${docs.join('---\n')}`;
}
