import authorizationPolicies from '../../k8s/istio/authorizationpolicy.yaml';
import requestAuthentications from '../../k8s/istio/requestauthentication.yaml';
import { parseAllDocuments } from 'yaml';
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
  /** The Istio release the verdict models. */
  istio?: string;
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

type KeySource = 'factory' | 'fetch' | 'none';

/** The JWKS paths this factory serves: every key, or some keyIds' (GET /keys/a,b/jwks.json). */
const FACTORY_JWKS_PATH = /^\/(?:\.well-known\/jwks\.json|keys\/[A-Za-z0-9._,-]+\/jwks\.json)$/;

/** Every jwtRules[].jwksUri of the RequestAuthentications in the YAML (none when it does not parse: the server names the problem). */
export function jwksUrisOf(text: string): string[] {
  const uris = new Set<string>();
  try {
    for (const doc of parseAllDocuments(text)) {
      const value = doc.toJS() as { kind?: unknown; spec?: { jwtRules?: Array<{ jwksUri?: unknown }> } } | null;
      if (value?.kind !== 'RequestAuthentication' || !Array.isArray(value.spec?.jwtRules)) continue;
      for (const rule of value.spec.jwtRules) if (typeof rule?.jwksUri === 'string') uris.add(rule.jwksUri);
    }
  } catch {
    /* invalid YAML: POST /mesh/evaluate answers invalid_policy with the source and field */
  }
  return [...uris];
}

/**
 * This factory's keys for the rules, as a sidecar would get them if istiod could fetch: a jwksUri
 * naming one of the factory's JWKS paths gets that document from this factory (so a rule that
 * trusts servicea's key only still refuses serviceb's), and the factory's issuer gets the whole
 * JWKS for the rules whose jwksUri is elsewhere.
 */
async function factoryKeysFor(text: string, issuer: string | undefined): Promise<{ jwks: Record<string, unknown>; missing: string[] }> {
  const jwks: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const uri of jwksUrisOf(text)) {
    let path: string;
    try {
      path = new URL(uri).pathname;
    } catch {
      continue;
    }
    if (!FACTORY_JWKS_PATH.test(path)) continue;
    const answer = await call(path);
    if (answer.status === 404) {
      // None of the keyIds it names exists here yet: the rule has no key, as it would in the cluster.
      missing.push(uri);
      jwks[uri] = { keys: [] };
      continue;
    }
    if (answer.status !== 200) throw new Error(`GET ${path}: ${errorLine(answer)}`);
    jwks[uri] = answer.body;
  }
  const all = await call('/.well-known/jwks.json');
  if (all.status !== 200) throw new Error(`GET /.well-known/jwks.json: ${errorLine(all)}`);
  jwks[issuer ?? '*'] = all.body;
  return { jwks, missing };
}

/** What to tell a user whose token jwt_authn refused while the rules had no keys to check it with. */
function missingKeysOffer(issuer: string | undefined, useFactory: () => void): HTMLElement {
  return h(
    'div',
    { class: 'verdict warn', id: 'mesh-no-keys' },
    'No keys reached these rules',
    h('span', { class: 'detail' }, `The rules name their keys by jwksUri, a cluster host this factory does not fetch (MESH_FETCH_JWKS is off unless set), and no JWKS was given: like a sidecar whose istiod cannot fetch, every token fails "Jwt verification fails". ${issuer ? `Give the rules of issuer ${issuer} this factory's own JWKS:` : "Give the rules this factory's own JWKS:"}`),
    h('div', { class: 'buttons' }, h('button', { type: 'button', id: 'mesh-use-factory', onclick: useFactory }, "Use this factory's JWKS and evaluate again")),
  );
}

export function setupMeshPanel(context: { issuer(): string | undefined }): { showIssuer(issuer: string): void; useToken(token: string): void } {
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
  const form = byId<HTMLFormElement>('mesh-form');
  const useFactoryKeys = () => {
    document.querySelector<HTMLInputElement>('input[name="mesh-keys"][value="factory"]')!.checked = true;
    form.requestSubmit();
  };
  form.addEventListener('submit', async (event) => {
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
    const keys = (document.querySelector<HTMLInputElement>('input[name="mesh-keys"]:checked')?.value ?? 'factory') as KeySource;
    let jwks: Record<string, unknown> | undefined;
    let missing: string[] = [];
    const policies = pasted ? yaml.value : SUITE_POLICIES;
    if (keys === 'factory') {
      try {
        ({ jwks, missing } = await factoryKeysFor(policies, context.issuer()));
      } catch (err) {
        show(status, verdict('bad', "Cannot read this factory's JWKS", (err as Error).message));
        return;
      }
    }
    const port = valueOf('mesh-port');
    const istio = valueOf('mesh-istio');
    const body = {
      yaml: policies,
      request: { method: valueOf('mesh-method'), path: valueOf('mesh-path') || '/', headers, ...(port !== '' ? { port: Number(port) } : {}), ...(valueOf('mesh-principal') ? { sourcePrincipal: valueOf('mesh-principal') } : {}) },
      ...(Object.keys(labels).length > 0 || valueOf('mesh-namespace') ? { workload: { namespace: valueOf('mesh-namespace') || 'default', labels } } : {}),
      ...(jwks ? { jwks } : {}),
      ...(keys === 'fetch' ? { fetchJwks: true } : {}),
      ...(istio !== '' ? { istioVersion: istio } : {}),
    };
    const answer = await call<MeshVerdict & { error?: { code: string; message: string; source?: string; field?: string } }>('/mesh/evaluate', { method: 'POST', body });
    if (answer.status !== 200) {
      const error = answer.body?.error;
      const where = error?.source ? `${error.source}${error.field ? `, field ${error.field}` : ''}` : error?.field ? `field ${error.field}` : '';
      const title = error?.code === 'invalid_policy' ? 'Invalid policy' : error?.code === 'jwks_fetch_disabled' ? 'This factory does not fetch jwksUri (MESH_FETCH_JWKS is off)' : 'The request could not be evaluated';
      show(status, verdict('bad', title, `${errorLine(answer)}${where ? ` (${where})` : ''}`), error?.code === 'jwks_fetch_disabled' ? missingKeysOffer(context.issuer(), useFactoryKeys) : null);
      show(result);
      if (pasted && error?.code === 'invalid_policy') yaml.setAttribute('aria-invalid', 'true');
      if (error?.field === 'istioVersion') byId('mesh-istio').setAttribute('aria-invalid', 'true');
      return;
    }
    byId('mesh-istio').removeAttribute('aria-invalid');
    yaml.removeAttribute('aria-invalid');
    const v = answer.body;
    show(
      status,
      verdict(v.status === 200 ? 'ok' : 'bad', v.status === 200 ? '200: the request reaches the workload' : `${v.status} ${v.body || '(empty body)'}`, `decided by ${v.decidedBy}`),
      keys === 'none' && v.status === 401 && decidingStage(v.decidedBy) === 'jwt_authn' ? missingKeysOffer(context.issuer(), useFactoryKeys) : null,
      missing.length > 0 ? verdict('warn', 'This factory has none of the keyIds some jwksUri names', `${missing.join(', ')}: those rules get no key (mint with one of those keyIds to create it).`) : null,
      v.istio ? h('p', { id: 'mesh-release' }, `Istio release modelled: ${v.istio}`) : null,
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
    showIssuer(issuer: string) {
      byId('mesh-issuer').textContent = issuer;
    },
    useToken(token: string) {
      byId<HTMLTextAreaElement>('mesh-token').value = token;
    },
  };
}
