import { humanDuration } from '../../lib/tokeninfo.js';
import type { KeyInfo, KeyVersionInfo } from './api.js';
import { byId, h, s, show, verdict } from './dom.js';

/** The Keys panel: each keyId's versions on a time axis, with the mesh's JWKS refresh band. */

/** Whether a token signed now would meet a sidecar that has not refetched the JWKS since the key appeared. */
export function refetchRisk(key: KeyInfo, now: Date, refreshMs: number): { atRisk: boolean; kid: string; publishedAgoMs: number } {
  const signer = key.versions.find((v) => v.state === 'signing') ?? key.versions[0]!;
  // A version enters the JWKS when it is created (published ahead or not).
  const publishedAgoMs = now.getTime() - new Date(signer.createdAt).getTime();
  return { atRisk: publishedAgoMs < refreshMs, kid: signer.kid, publishedAgoMs };
}

const COLORS: Record<KeyVersionInfo['state'] | 'published-ahead', string> = { published: '#fbbc04', 'published-ahead': '#fbbc04', signing: '#1e8e3e', verifying: '#8ab4f8' };

/** One keyId's versions as SVG rows: published (yellow) → signing (green) → verifying (blue) → retired. */
function timeline(key: KeyInfo, now: Date, refreshMs: number): SVGElement {
  const width = 900;
  const rowH = 26;
  const left = 150;
  const times = key.versions.flatMap((v) => [v.createdAt, v.activateAt, v.retireAt].filter((t): t is string => t !== null).map((t) => new Date(t).getTime()));
  // Four refresh intervals either side of now at most: a retirement a day away would squeeze the
  // minutes that matter (is the signing key older than one interval?) into a few pixels.
  const reach = refreshMs * 4;
  const start = Math.max(Math.min(now.getTime() - refreshMs * 1.5, ...times), now.getTime() - reach);
  const end = Math.min(Math.max(now.getTime() + refreshMs * 1.5, ...times) + refreshMs / 2, now.getTime() + reach);
  const x = (t: number) => left + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * (width - left - 10);
  const height = 30 + rowH * key.versions.length + 20;
  const children: SVGElement[] = [];
  // The band: a sidecar may hold a JWKS fetched up to one refresh interval ago.
  children.push(s('rect', { x: x(now.getTime() - refreshMs), y: 18, width: x(now.getTime()) - x(now.getTime() - refreshMs), height: height - 36, fill: 'rgba(217,48,37,0.18)' }));
  const newestFirst = key.versions;
  newestFirst.forEach((v, i) => {
    const y = 26 + i * rowH;
    const created = new Date(v.createdAt).getTime();
    const activate = new Date(v.activateAt).getTime();
    // A newer version that already signs ended this one's signing time; the next newer one starts signing at its own activateAt.
    const newer = newestFirst.slice(0, i).map((n) => new Date(n.activateAt).getTime());
    const signingEnd = newer.length > 0 ? Math.min(...newer) : undefined;
    const retire = v.retireAt === null ? end : new Date(v.retireAt).getTime();
    children.push(s('text', { x: 4, y: y + 14, 'font-size': 12, fill: '#1b1f24' }, `${v.kid.slice(0, 12)}… ${v.state}`));
    if (activate > created) children.push(s('rect', { x: x(created), y, width: Math.max(1, x(activate) - x(created)), height: 18, fill: COLORS.published }, s('title', {}, `published ${v.createdAt}, signs from ${v.activateAt}`)));
    const signEnd = Math.min(signingEnd ?? retire, retire);
    if (signEnd > activate) children.push(s('rect', { x: x(activate), y, width: Math.max(1, x(signEnd) - x(activate)), height: 18, fill: COLORS.signing }, s('title', {}, `signs from ${v.activateAt}`)));
    if (retire > signEnd) children.push(s('rect', { x: x(signEnd), y, width: Math.max(1, x(retire) - x(signEnd)), height: 18, fill: COLORS.verifying }, s('title', {}, `verifies until ${v.retireAt ?? 'rotated'}`)));
  });
  const nowX = x(now.getTime());
  children.push(s('line', { x1: nowX, x2: nowX, y1: 12, y2: height - 14, stroke: '#1b1f24', 'stroke-width': 2 }));
  children.push(s('text', { x: nowX + 4, y: 12, 'font-size': 11, fill: '#1b1f24' }, 'now'));
  // The band's label ends at the now line; the axis' ends are dated at the top, clear of it.
  children.push(s('text', { x: nowX - 4, y: height - 4, 'font-size': 11, fill: '#a50e0e', 'text-anchor': 'end' }, `last ${humanDuration(refreshMs / 1000)}: JWKS a sidecar may still hold`));
  children.push(s('text', { x: left, y: 12, 'font-size': 11, fill: '#4b5563' }, new Date(start).toISOString().slice(0, 16).replace('T', ' ')));
  children.push(s('text', { x: width - 10, y: 12, 'font-size': 11, fill: '#4b5563', 'text-anchor': 'end' }, new Date(end).toISOString().slice(0, 16).replace('T', ' ')));
  const label = `${key.keyId}: ${key.versions.map((v) => `${v.kid} ${v.state}`).join(', ')}`;
  return s('svg', { class: 'timeline', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label }, ...children);
}

function keySection(key: KeyInfo, now: Date, refreshMs: number): HTMLElement {
  const risk = refetchRisk(key, now, refreshMs);
  const rotation = key.rotation;
  return h(
    'section',
    { class: 'key', 'data-keyid': key.keyId, 'aria-labelledby': `key-${key.keyId}` },
    h('h3', { id: `key-${key.keyId}` }, `${key.keyId} (${key.alg})`),
    risk.atRisk
      ? verdict('bad', `A token signed now may be refused by a sidecar that has not refetched: 401 Jwks doesn't have key to match kid or alg from Jwt`, `kid ${risk.kid} entered the JWKS ${humanDuration(risk.publishedAgoMs / 1000)} ago, less than one refresh interval (${humanDuration(refreshMs / 1000)}). Rotate with publishAhead ≥ the interval.`)
      : verdict('ok', 'A token signed now verifies at every sidecar', `kid ${risk.kid} has been in the JWKS for ${humanDuration(risk.publishedAgoMs / 1000)}, longer than one refresh interval (${humanDuration(refreshMs / 1000)}).`),
    timeline(key, now, refreshMs),
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, ...['kid', 'state', 'published', 'signs from', 'retires'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...key.versions.map((v) => h('tr', {}, h('td', {}, h('code', {}, v.kid)), h('td', {}, v.state), h('td', {}, v.createdAt), h('td', {}, v.activateAt), h('td', {}, v.retireAt ?? '(not scheduled)')))),
    ),
    h('p', { class: 'hint' }, rotation && rotation.interval && Number(rotation.interval) !== 0 ? `Rotation: every ${typeof rotation.interval === 'number' ? humanDuration(rotation.interval) : rotation.interval}, published ${rotation.publishAhead ?? 0} s ahead, next at ${rotation.nextAt ?? '(not scheduled)'}.` : 'Rotation: on request only (POST /keys/<keyId>/rotate?publishAhead=1200, or jwt rotate).'),
  );
}

export function setupKeysPanel(context: { load(): Promise<{ keys: KeyInfo[]; total: number }> }): { render(): Promise<void> } {
  const status = byId('keys-status');
  const result = byId('keys-result');
  async function render() {
    const minutes = Number(byId<HTMLInputElement>('keys-refresh').value);
    const refreshMs = (Number.isFinite(minutes) && minutes > 0 ? minutes : 20) * 60_000;
    let loaded;
    try {
      loaded = await context.load();
    } catch (err) {
      show(status, verdict('bad', 'Cannot list the keys', (err as Error).message));
      return;
    }
    const now = new Date();
    show(status, loaded.keys.length === 0 ? verdict('warn', 'No keys yet', 'Mint a token or GET /keys/<keyId> to create one.') : h('p', {}, `${loaded.total} keyId${loaded.total === 1 ? '' : 's'}${loaded.total > loaded.keys.length ? `, the first ${loaded.keys.length} shown` : ''}.`));
    show(result, h('div', { class: 'legend' }, ...[['sw-published', 'published, not yet signing'], ['sw-signing', 'signing'], ['sw-verifying', 'rotated out, still verifying'], ['sw-band', 'JWKS refresh interval']].map(([c, t]) => h('span', {}, h('span', { class: `swatch ${c}` }), t!))), ...loaded.keys.map((k) => keySection(k, now, refreshMs)));
  }
  byId<HTMLFormElement>('keys-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void render();
  });
  return { render };
}
