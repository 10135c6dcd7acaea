import { TokenError, verificationKeysFromJwks, verifyJwt, type VerificationKey, type VerifyOptions } from '../../lib/jwt.js';
import { decodeToken, MalformedTokenError, type DecodedToken } from '../../lib/tokeninfo.js';
import { call, errorLine, type KeyInfo } from './api.js';
import { byId, h, json, show, valueOf, verdict } from './dom.js';

/** The Token panel: decode and verify in the browser; on the server only when asked. */

/** What one check answered: passed, or refused with /verify's name, code and message. */
interface CheckResult {
  check: string;
  error?: Record<string, unknown>;
  skipped?: string;
}

/** Far beyond any lifetime: checks other than the times must not fail on them. */
const IGNORE_TIMES = 1e11;

/**
 * Each check on its own, named as /verify names a refusal: the signature (form, kid, alg), the
 * times, then iss, aud and sub. verifyJwt stops at the first failure; running one check at a time
 * shows every check that fails, not only the first.
 */
export async function runChecks(token: string, keys: VerificationKey[], wanted: { iss?: string; aud?: string; sub?: string }, now: Date): Promise<{ checks: CheckResult[]; verdict: CheckResult }> {
  const attempt = async (check: string, options: Omit<VerifyOptions, 'now'>, ignore: string[] = []): Promise<CheckResult> => {
    try {
      await verifyJwt(token, keys, { ...options, now });
      return { check };
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      if (ignore.includes(err.code)) return { check };
      return { check, error: err.toJSON() };
    }
  };
  const signature = await attempt('signature (form, kid, alg, key)', { clockTolerance: IGNORE_TIMES }, ['exp_missing']);
  const checks: CheckResult[] = [signature];
  const claimChecks: Array<[string, Omit<VerifyOptions, 'now'>, boolean]> = [
    ['exp / nbf (60 s of skew)', {}, true],
    [`iss = ${wanted.iss ?? ''}`, { issuer: wanted.iss, clockTolerance: IGNORE_TIMES }, wanted.iss !== undefined],
    [`aud ∋ ${wanted.aud ?? ''}`, { audience: wanted.aud, clockTolerance: IGNORE_TIMES }, wanted.aud !== undefined],
    [`sub = ${wanted.sub ?? ''}`, { subject: wanted.sub, clockTolerance: IGNORE_TIMES }, wanted.sub !== undefined],
  ];
  for (const [check, options, asked] of claimChecks) {
    if (!asked) continue;
    if (signature.error) checks.push({ check, skipped: 'not checked: the signature did not verify' });
    else checks.push(await attempt(check, options, check.startsWith('exp') ? [] : ['exp_missing']));
  }
  // The verdict /verify would give: every check at once, the first failure in jsonwebtoken's order.
  const overall = await attempt('all', { issuer: wanted.iss, audience: wanted.aud, subject: wanted.sub });
  return { checks, verdict: overall };
}

function describeDecoded(decoded: DecodedToken, keyIndex: Map<string, KeyInfo>): HTMLElement {
  const kid = typeof decoded.header.kid === 'string' ? decoded.header.kid : undefined;
  const key = kid ? keyIndex.get(kid) : undefined;
  const version = key?.versions.find((v) => v.kid === kid);
  return h(
    'div',
    {},
    h('h3', {}, 'Signed by'),
    h('p', { id: 'token-signer' }, `alg ${decoded.header.alg}, kid ${kid ?? '(none)'}`, key ? ` → keyId ${key.keyId} (${version?.state ?? 'retired'})` : kid ? ' → no keyId of this factory holds it' : ''),
    h('h3', {}, 'Times'),
    h('table', {}, h('tbody', {}, ...decoded.times.map((t) => h('tr', {}, h('th', { scope: 'row' }, t.claim), h('td', {}, t.date), h('td', {}, t.relative))), h('tr', {}, h('th', { scope: 'row' }, 'lifetime'), h('td', { colspan: 2, id: 'token-lifetime' }, decoded.status)))),
    h('h3', {}, 'Header'),
    json(decoded.header, 'Header'),
    h('h3', {}, 'Claims'),
    json(decoded.payload, 'Claims'),
    h('p', { class: 'hint' }, `${decoded.bytes} bytes${decoded.bytes > 4096 ? ': over 4 KiB, Envoy does not cache it; 8 KiB is a common header limit' : ''}`),
  );
}

const refusalText = (error: Record<string, unknown>) => `${error.name} (${error.code}): ${error.message}${error.expiredAt ? `, expired at ${error.expiredAt}` : ''}${error.date ? `, valid from ${error.date}` : ''}`;

function checksTable(checks: CheckResult[]): HTMLElement {
  return h(
    'table',
    { id: 'token-checks' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'check'), h('th', { scope: 'col' }, 'result'))),
    h('tbody', {}, ...checks.map((c) => h('tr', { 'data-failed': c.error ? 'true' : 'false' }, h('td', {}, c.check), h('td', {}, c.error ? `refused: ${refusalText(c.error)}` : c.skipped ?? 'passed')))),
  );
}

/** Wires the Token panel; `keyIndex` maps kid → keyId (filled by the Keys data). */
export function setupTokenPanel(context: { keyIndex: () => Map<string, KeyInfo>; issuer: () => string | undefined }): { inspect(token: string): void } {
  const input = byId<HTMLTextAreaElement>('token-input');
  const jwksBox = byId('token-jwks-box');
  const verdictBox = byId('token-verdict');
  const result = byId('token-result');
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="token-keys"]')) {
    radio.addEventListener('change', () => (jwksBox.hidden = radio.value !== 'pasted' || !radio.checked));
  }

  const optional = (id: string) => valueOf(id) || undefined;

  async function check(): Promise<void> {
    const token = input.value.trim();
    if (token === '') {
      show(verdictBox, verdict('warn', 'Paste a token first.'));
      show(result);
      return;
    }
    let decoded: DecodedToken;
    try {
      decoded = decodeToken(token, new Date());
    } catch (err) {
      input.setAttribute('aria-invalid', 'true');
      show(verdictBox, verdict('bad', 'Malformed token: JsonWebTokenError (malformed)', err instanceof MalformedTokenError ? err.message : String(err)));
      show(result);
      return;
    }
    input.removeAttribute('aria-invalid');
    show(verdictBox, 'Checking…');
    show(result, describeDecoded(decoded, context.keyIndex()));
    const source = document.querySelector<HTMLInputElement>('input[name="token-keys"]:checked')?.value;
    let keys: VerificationKey[];
    try {
      if (source === 'pasted') {
        let doc: unknown;
        try {
          doc = JSON.parse(valueOf('token-jwks'));
        } catch {
          throw new Error('the pasted JWKS is not valid JSON');
        }
        keys = await verificationKeysFromJwks(doc);
      } else {
        const answer = await call('/.well-known/jwks.json');
        if (answer.status !== 200) throw new Error(`GET /.well-known/jwks.json: ${errorLine(answer)}`);
        keys = await verificationKeysFromJwks(answer.body);
      }
    } catch (err) {
      show(verdictBox, verdict('bad', 'Cannot verify', (err as Error).message));
      return;
    }
    const { checks, verdict: overall } = await runChecks(token, keys, { iss: optional('token-iss'), aud: optional('token-aud'), sub: optional('token-sub') }, new Date());
    const against = source === 'pasted' ? 'the pasted JWKS' : "the factory's JWKS";
    show(
      verdictBox,
      overall.error ? verdict('bad', `Refused: ${refusalText(overall.error)}`, `verified in this browser against ${against}`) : verdict('ok', 'Valid', `verified in this browser against ${against}; ${decoded.status}`),
      checksTable(checks),
    );
  }

  byId<HTMLFormElement>('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void check();
  });

  byId('token-server').addEventListener('click', async () => {
    const token = input.value.trim();
    let kid: unknown;
    try {
      kid = decodeToken(token, new Date()).header.kid;
    } catch {
      kid = undefined;
    }
    const key = typeof kid === 'string' ? context.keyIndex().get(kid) : undefined;
    const aud = optional('token-aud');
    const sub = optional('token-sub');
    if (!key || !aud || !sub) {
      show(verdictBox, verdict('warn', 'Verify on the server needs more', `${!key ? 'the token must name the kid of one of this factory\'s keys; ' : ''}${!aud ? 'an accepted audience; ' : ''}${!sub ? 'a required subject' : ''}`.replace(/; $/, '')));
      return;
    }
    const answer = await call<{ valid: boolean; error?: Record<string, unknown>; claims: unknown }>(`/verify/${encodeURIComponent(key.keyId)}`, { method: 'POST', body: { token, aud, sub, ...(optional('token-iss') ? { iss: optional('token-iss') } : {}) } });
    if (answer.status === 200) show(verdictBox, verdict('ok', `Valid on the server (POST /verify/${key.keyId}: 200)`));
    else if (answer.status === 403 && answer.body.error) show(verdictBox, verdict('bad', `Refused on the server: ${refusalText(answer.body.error)}`, `POST /verify/${key.keyId}: 403`));
    else show(verdictBox, verdict('bad', `The server could not verify: ${errorLine(answer)}`));
  });

  return {
    inspect(token: string) {
      input.value = token;
      const iss = context.issuer();
      if (iss && valueOf('token-iss') === '') byId<HTMLInputElement>('token-iss').value = iss;
      void check();
    },
  };
}
