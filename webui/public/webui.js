// The webui's script. It never handles a token: the gateway's session cookie is HttpOnly and
// every call below goes to this origin, where the gateway adds the user's access token.
const json = { accept: 'application/json', 'x-requested-with': 'webui' };

async function call(name) {
  const status = document.getElementById(`${name}-status`);
  const out = document.getElementById(name);
  status.textContent = 'calling…';
  try {
    const res = await fetch(`/api/${name}`, { headers: json, credentials: 'same-origin' });
    const body = await res.json();
    status.textContent = `HTTP ${res.status}`;
    status.className = `status ${res.ok ? 'ok' : 'refused'}`;
    out.textContent = JSON.stringify(res.ok ? body.answer : body, null, 2);
  } catch (err) {
    status.textContent = 'failed';
    status.className = 'status refused';
    out.textContent = String(err);
  }
}

async function whoAmI() {
  const who = document.getElementById('who');
  const res = await fetch('/api/me', { headers: json, credentials: 'same-origin' });
  if (res.status === 401) {
    who.textContent = 'Not logged in.';
    document.getElementById('login').hidden = false;
    return false;
  }
  const me = await res.json();
  who.textContent = `Logged in as ${me.name ?? me.sub} (${me.sub})`;
  who.dataset.sub = me.sub;
  document.getElementById('logout').hidden = false;
  return true;
}

for (const button of document.querySelectorAll('button[data-call]')) button.addEventListener('click', () => call(button.dataset.call));
whoAmI().then((loggedIn) => Promise.all(['serviceb', 'servicec'].map((n) => (loggedIn ? call(n) : undefined))));
