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

/** Edit distance (Levenshtein), to suggest the keyId a typo meant. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const next = [i];
    for (let j = 1; j <= b.length; j += 1) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** The existing keyId a new one is probably a typo of: within two edits (or differing only in case), the closest. */
export function nearestKeyId(keyId: string, known: readonly string[]): string | undefined {
  const scored = known.map((k) => ({ k, d: k.toLowerCase() === keyId.toLowerCase() ? 0 : distance(keyId, k) })).filter((s) => s.d <= 2).sort((x, y) => x.d - y.d);
  return scored[0]?.k;
}

export function setupMintPanel(context: { inspect(token: string): void; keyIds(): Promise<string[]> }): void {
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
  const keyIdInput = byId<HTMLInputElement>('mint-keyid');
  const newKey = byId('mint-new-key');
  const suggested = byId<HTMLButtonElement>('mint-suggested');
  // The keyId the user agreed to create (GET, POST /keys/:keyId and /issueToken/:keyId create unknown keyIds).
  let approvedNewKeyId: string | undefined;
  const closeNewKey = () => {
    newKey.hidden = true;
  };
  keyIdInput.addEventListener('input', closeNewKey);
  byId('mint-cancel').addEventListener('click', () => {
    closeNewKey();
    show(status, verdict('warn', 'Nothing minted', 'Pick an existing keyId from the list, or confirm the new one.'));
    keyIdInput.focus();
  });
  byId('mint-create').addEventListener('click', () => {
    approvedNewKeyId = keyIdInput.value.trim();
    closeNewKey();
    byId<HTMLFormElement>('mint-form').requestSubmit();
  });
  suggested.addEventListener('click', () => {
    keyIdInput.value = suggested.value;
    closeNewKey();
    byId<HTMLFormElement>('mint-form').requestSubmit();
  });

  /** False (and the question shown) when the keyId is not one of the factory's and the user has not agreed to create it. */
  async function keyIdAgreed(keyId: string): Promise<boolean> {
    if (approvedNewKeyId === keyId) return true;
    let known: string[];
    try {
      known = await context.keyIds();
    } catch {
      // The factory's list is unavailable: let the factory answer for itself.
      return true;
    }
    if (known.includes(keyId)) return true;
    const near = nearestKeyId(keyId, known);
    byId('mint-new-key-text').textContent = `This factory has no keyId "${keyId}": minting creates a new key pair for it${near ? `. Did you mean "${near}"?` : ` (it has ${known.length === 0 ? 'none yet' : [...known].sort().join(', ')}).`}`;
    suggested.hidden = near === undefined;
    if (near) {
      suggested.value = near;
      suggested.textContent = `Mint with ${near}`;
    }
    byId('mint-create').textContent = `Create ${keyId} and mint`;
    newKey.hidden = false;
    show(status, verdict('warn', `"${keyId}" is a new keyId`, 'Confirm below before the factory creates it.'));
    show(result);
    (near ? suggested : byId('mint-create')).focus();
    return false;
  }

  byId<HTMLFormElement>('mint-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const checked = validate();
    if ('problem' in checked) {
      show(status, verdict('bad', 'The claims cannot be sent', checked.problem));
      claimsInput.focus();
      return;
    }
    const keyId = valueOf('mint-keyid');
    if (!(await keyIdAgreed(keyId))) return;
    show(status, 'Minting…');
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
