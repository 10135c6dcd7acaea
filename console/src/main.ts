import { call, loadDiscovery, loadKeys, type KeyInfo } from './api.js';
import { byId } from './dom.js';
import { setupKeysPanel } from './keys.js';
import { setupLoginPanel } from './login.js';
import { setupMeshPanel } from './mesh.js';
import { setupMintPanel } from './mint.js';
import { setupTokenPanel } from './token.js';

/** The console's entry: tabs (WAI-ARIA tabs pattern: arrows, Home, End), shared data, the panels. */

const tabs = [...document.querySelectorAll<HTMLButtonElement>('[role="tab"]')];

function select(tab: HTMLButtonElement, focus = true): void {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = selected ? 0 : -1;
    byId(t.getAttribute('aria-controls')!).hidden = !selected;
  }
  if (focus) tab.focus();
  history.replaceState(null, '', `${location.pathname}${location.search}#${tab.id.replace(/^tab-/, '')}`);
  if (tab.id === 'tab-keys') void keysPanel.render();
}

for (const [i, tab] of tabs.entries()) {
  tab.addEventListener('click', () => select(tab));
  tab.addEventListener('keydown', (event) => {
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    select(tabs[(next + tabs.length) % tabs.length]!);
  });
}

let keyIndex = new Map<string, KeyInfo>();
let issuer: string | undefined;

async function refreshKeys() {
  const loaded = await loadKeys();
  keyIndex = new Map(loaded.keys.flatMap((k) => k.versions.map((v) => [v.kid, k] as const)));
  const list = byId('keyid-list');
  list.replaceChildren(...loaded.keys.map((k) => Object.assign(document.createElement('option'), { value: k.keyId })));
  return loaded;
}

const tokenPanel = setupTokenPanel({ keyIndex: () => keyIndex, issuer: () => issuer });
const keysPanel = setupKeysPanel({ load: refreshKeys });
const meshPanel = setupMeshPanel({ issuer: () => issuer });
setupMintPanel({
  inspect(token) {
    select(byId<HTMLButtonElement>('tab-token'));
    tokenPanel.inspect(token);
  },
  async keyIds() {
    const list = await call<string[]>('/utils/keys');
    if (list.status !== 200 || !Array.isArray(list.body)) throw new Error(`GET /utils/keys: ${list.status}`);
    return list.body;
  },
});
setupLoginPanel(() => select(byId<HTMLButtonElement>('tab-login'), false));

void (async () => {
  const info = byId('factory-info');
  try {
    const discovery = await loadDiscovery();
    issuer = discovery.issuer;
    byId<HTMLInputElement>('token-iss').value ||= issuer;
    meshPanel.showIssuer(issuer);
    const loaded = await refreshKeys();
    info.textContent = `issuer ${issuer} · ${loaded.total} keyId${loaded.total === 1 ? '' : 's'} · OpenID provider ${discovery.authorization_endpoint ? 'on' : 'off'}`;
  } catch (err) {
    info.textContent = `The factory does not answer: ${(err as Error).message}`;
  }
})();

const fromHash = () => tabs.find((t) => t.id === `tab-${location.hash.slice(1)}`);
const initial = fromHash();
if (initial) select(initial, false);
// A link or the address bar naming another panel (#mesh) selects it without a reload.
window.addEventListener('hashchange', () => {
  const tab = fromHash();
  if (tab && tab.getAttribute('aria-selected') !== 'true') select(tab, false);
});
