import authorizationPolicies from '../../k8s/istio/authorizationpolicy.yaml';
import requestAuthentications from '../../k8s/istio/requestauthentication.yaml';
import { call, errorLine } from './api.js';
import { byId, h, show, valueOf, verdict } from './dom.js';

/** The Mesh panel: POST /mesh/evaluate, the verdict and the filter chain with the stage that decided. */

/** The suite's own rules (k8s/istio), bundled as text when the console is built. */
export const SUITE_POLICIES = `${requestAuthentications}\n---\n${authorizationPolicies}`;

/** The stages of the sidecar's HTTP filter chain, in the order the console draws them. */
export const STAGES = ['CUSTOM', 'jwt_authn', 'DENY', 'ALLOW'] as const;
type Stage = (typeof STAGES)[number] | 'upstream';

const STAGE_NOTES: Record<string, string> = { CUSTOM: 'ext_authz', jwt_authn: 'RequestAuthentication', DENY: 'RBAC', ALLOW: 'RBAC', upstream: 'the workload' };

/** The stage that decided, from the verdict's decidedBy (istiod's names). */
export function decidingStage(decidedBy: string): Stage {
  if (decidedBy.startsWith('CUSTOM')) return 'CUSTOM';
  if (decidedBy.startsWith('RequestAuthentication')) return 'jwt_authn';
  if (decidedBy.startsWith('AuthorizationPolicy DENY')) return 'DENY';
  if (decidedBy.startsWith('AuthorizationPolicy ALLOW') || decidedBy.startsWith('AuthorizationPolicy: no ALLOW')) return 'ALLOW';
  return 'upstream';
}

interface MeshVerdict {
  status: number;
  body: string;
  responseHeaders: Record<string, string>;
  principal: string | null;
  decidedBy: string;
  steps: string[];
  upstreamPath: string;
  upstreamHeaders: Record<string, string | string[]>;
  /** The Istio release the answer assumed, when the engine says. */
  istioVersion?: string;
  /** The filter order of that release, when the engine says. */
  filterChain?: string[];
}

function chain(v: MeshVerdict): HTMLElement {
  const order = (Array.isArray(v.filterChain) && v.filterChain.length > 0 ? v.filterChain : [...STAGES]) as string[];
  const decided = decidingStage(v.decidedBy);
  const at = decided === 'upstream' ? order.length : order.indexOf(decided);
  const boxes: HTMLElement[] = [];
  [...order, 'upstream'].forEach((stage, i) => {
    const isDecider = stage === decided;
    const state = isDecider ? `decided${v.status === 200 ? '' : ' refused'}` : i < at ? 'passed' : stage === 'upstream' && v.status === 200 ? 'passed' : 'skipped';
    const label = isDecider ? (v.status === 200 ? 'decided: forwards' : `decided: ${v.status}`) : i < at ? 'passed' : stage === 'upstream' ? (v.status === 200 ? 'receives it' : 'not reached') : 'not reached';
    if (i > 0) boxes.push(h('span', { class: 'arrow', 'aria-hidden': 'true' }, '→'));
    boxes.push(h('div', { class: `stage ${state}`, 'data-stage': stage, 'aria-current': isDecider ? 'step' : undefined }, stage, h('small', {}, STAGE_NOTES[stage] ?? ''), h('small', {}, label)));
  });
  return h('div', { class: 'chain', role: 'list', 'aria-label': 'Filter chain' }, ...boxes.map((b) => (b.classList.contains('stage') ? (b.setAttribute('role', 'listitem'), b) : b)));
}

/** `app=serviceb,version=v1` → labels. */
const labelsOf = (text: string) => Object.fromEntries(text.split(',').map((p) => p.trim()).filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()]));

export function setupMeshPanel(): { useToken(token: string): void } {
  const yamlBox = byId('mesh-yaml-box');
  const yaml = byId<HTMLTextAreaElement>('mesh-yaml');
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="mesh-source"]')) {
    radio.addEventListener('change', () => {
      yamlBox.hidden = !(radio.value === 'pasted' && radio.checked);
      if (!yamlBox.hidden && yaml.value.trim() === '') yaml.value = SUITE_POLICIES;
    });
  }
  const status = byId('mesh-status');
  const result = byId('mesh-result');
  byId<HTMLFormElement>('mesh-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    show(status, 'Evaluating…');
    show(result);
    const pasted = document.querySelector<HTMLInputElement>('input[name="mesh-source"]:checked')?.value === 'pasted';
    const headers: Record<string, string[]> = {};
    for (const line of valueOf('mesh-headers').split('\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) (headers[line.slice(0, colon).trim().toLowerCase()] ??= []).push(line.slice(colon + 1).trim());
    }
    const token = valueOf('mesh-token');
    if (token !== '') (headers.authorization ??= []).push(`Bearer ${token}`);
    const labels = labelsOf(valueOf('mesh-workload'));
    headers.host ??= [labels.app ?? 'localhost'];
    let jwks: Record<string, unknown> | undefined;
    if (byId<HTMLInputElement>('mesh-factory-jwks').checked) {
      const answer = await call('/.well-known/jwks.json');
      if (answer.status === 200) jwks = { '*': answer.body };
    }
    const port = valueOf('mesh-port');
    const body = {
      yaml: pasted ? yaml.value : SUITE_POLICIES,
      request: { method: valueOf('mesh-method'), path: valueOf('mesh-path') || '/', headers, ...(port !== '' ? { port: Number(port) } : {}), ...(valueOf('mesh-principal') ? { sourcePrincipal: valueOf('mesh-principal') } : {}) },
      ...(Object.keys(labels).length > 0 || valueOf('mesh-namespace') ? { workload: { namespace: valueOf('mesh-namespace') || 'default', labels } } : {}),
      ...(jwks ? { jwks } : {}),
    };
    const answer = await call<MeshVerdict & { error?: { code: string; message: string; source?: string; field?: string } }>('/mesh/evaluate', { method: 'POST', body });
    if (answer.status !== 200) {
      const error = answer.body?.error;
      const where = error?.source ? `${error.source}${error.field ? `, field ${error.field}` : ''}` : error?.field ? `field ${error.field}` : '';
      show(status, verdict('bad', error?.code === 'invalid_policy' ? 'Invalid policy' : 'The request could not be evaluated', `${errorLine(answer)}${where ? ` (${where})` : ''}`));
      show(result);
      if (pasted) yaml.setAttribute('aria-invalid', 'true');
      return;
    }
    yaml.removeAttribute('aria-invalid');
    const v = answer.body;
    show(
      status,
      verdict(v.status === 200 ? 'ok' : 'bad', v.status === 200 ? '200: the request reaches the workload' : `${v.status} ${v.body || '(empty body)'}`, `decided by ${v.decidedBy}`),
      v.istioVersion ? h('p', { id: 'mesh-release' }, `Istio release assumed: ${v.istioVersion}`) : null,
    );
    show(
      result,
      chain(v),
      h(
        'table',
        {},
        h(
          'tbody',
          {},
          h('tr', {}, h('th', { scope: 'row' }, "Envoy's body"), h('td', {}, h('code', { id: 'mesh-body' }, v.body === '' ? '(empty: forwarded)' : v.body))),
          h('tr', {}, h('th', { scope: 'row' }, 'request principal'), h('td', {}, v.principal ?? '(none)')),
          ...Object.entries(v.responseHeaders).map(([k, val]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, val))),
        ),
      ),
      h('h3', {}, 'Why'),
      h('ol', { class: 'steps', id: 'mesh-steps' }, ...v.steps.map((step) => h('li', {}, step))),
    );
  });
  return {
    useToken(token: string) {
      byId<HTMLTextAreaElement>('mesh-token').value = token;
    },
  };
}
