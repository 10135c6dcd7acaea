import { VARIANTS, VERDICTS } from '../../jwt-factory/verdicts.js';
import { call, errorLine } from './api.js';
import { byId, h, show, valueOf, verdict } from './dom.js';

/** The Mint panel: POST /issueToken/:keyId with claims, lifetime and a variant. */

/** The claims editor's verdict: an object the factory accepts, or the reason it would not. */
export function checkClaims(text: string): { claims: Record<string, unknown> } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(text === '' ? '{}' : text);
  } catch (err) {
    return { problem: `not valid JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { problem: 'the claims must be a JSON object' };
  const claims = value as Record<string, unknown>;
  if ('exp' in claims || 'iat' in claims) return { problem: 'exp and iat are set by the factory: use the lifetime or the expired variant' };
  for (const name of ['iss', 'sub', 'jti']) if (name in claims && (typeof claims[name] !== 'string' || claims[name] === '')) return { problem: `${name} must be a non-empty string (Envoy requires it)` };
  const aud = claims.aud;
  if (aud !== undefined && !(typeof aud === 'string' && aud !== '') && !(Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === 'string' && a !== ''))) return { problem: 'aud must be a string or a list of strings' };
  return { claims };
}

export function setupMintPanel(context: { inspect(token: string): void }): void {
  const select = byId<HTMLSelectElement>('mint-variant');
  for (const v of VARIANTS) select.append(h('option', { value: v }, v));
  const variantVerdict = byId('mint-variant-verdict');
  const describeVariant = () => {
    const v = select.value as (typeof VARIANTS)[number] | '';
    variantVerdict.textContent = v === '' ? 'A good token: the mesh forwards it (200) when the rules trust this key.' : `Mesh (Envoy): ${VERDICTS[v].envoy}. Factory /verify: ${VERDICTS[v].verify}.`;
  };
  select.addEventListener('change', describeVariant);
  describeVariant();

  const claimsInput = byId<HTMLTextAreaElement>('mint-claims');
  const claimsError = byId('mint-claims-error');
  const validate = () => {
    const checked = checkClaims(claimsInput.value.trim());
    const problem = 'problem' in checked ? checked.problem : '';
    claimsError.textContent = problem;
    if (problem) claimsInput.setAttribute('aria-invalid', 'true');
    else claimsInput.removeAttribute('aria-invalid');
    return checked;
  };
  claimsInput.addEventListener('input', validate);

  const status = byId('mint-status');
  const result = byId('mint-result');
  const credentials = byId('mint-credentials');
  byId<HTMLFormElement>('mint-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const checked = validate();
    if ('problem' in checked) {
      show(status, verdict('bad', 'The claims cannot be sent', checked.problem));
      claimsInput.focus();
      return;
    }
    show(status, 'Minting…');
    const keyId = valueOf('mint-keyid');
    const query = new URLSearchParams({ format: 'json' });
    if (valueOf('mint-ttl') !== '') query.set('ttl', valueOf('mint-ttl'));
    if (select.value !== '') query.set('variant', select.value);
    const headers: Record<string, string> = {};
    if (!credentials.hidden && valueOf('mint-client-id') !== '') headers.authorization = `Basic ${btoa(`${valueOf('mint-client-id')}:${byId<HTMLInputElement>('mint-client-secret').value}`)}`;
    const answer = await call<Record<string, unknown>>(`/issueToken/${encodeURIComponent(keyId)}?${query}`, { method: 'POST', body: checked.claims, headers });
    if (answer.status === 401) {
      credentials.hidden = false;
      show(status, verdict('bad', 'The factory wants client credentials (401)', `${errorLine(answer)}. Fill in the client id and secret below and mint again.`));
      show(result);
      byId('mint-client-id').focus();
      return;
    }
    if (answer.status !== 200) {
      show(status, verdict('bad', 'The factory refused', errorLine(answer)));
      show(result);
      return;
    }
    const issued = answer.body as { token: string; kid: string; alg: string; exp: number | null; bytes: number; warnings?: string[]; verdict?: { envoy: string; verify: string } };
    show(status, verdict('ok', `Minted with ${keyId}: kid ${issued.kid} (${issued.alg}), ${issued.bytes} bytes`, issued.exp ? `exp ${new Date(issued.exp * 1000).toISOString()}` : 'no exp'));
    show(
      result,
      h('label', { for: 'mint-token' }, 'Token'),
      h('textarea', { id: 'mint-token', rows: 5, readonly: true, spellcheck: 'false' }, issued.token),
      issued.verdict ? h('table', {}, h('tbody', {}, h('tr', {}, h('th', { scope: 'row' }, 'mesh (Envoy)'), h('td', {}, issued.verdict.envoy)), h('tr', {}, h('th', { scope: 'row' }, 'factory /verify'), h('td', {}, issued.verdict.verify)))) : null,
      ...(issued.warnings ?? []).map((w) => verdict('warn', w)),
      h('div', { class: 'buttons' }, h('button', { type: 'button', id: 'mint-inspect', class: 'secondary', onclick: () => context.inspect(issued.token) }, 'Open in the Token panel')),
    );
  });
}
