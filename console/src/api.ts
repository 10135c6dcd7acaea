/** The factory's endpoints the console reads: same origin, JSON. */

export interface Answer<T = unknown> {
  status: number;
  type: string;
  body: T;
}

/** One call to the factory (same origin); the body is parsed when it is JSON. */
export async function call<T = unknown>(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer<T>> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: { accept: 'application/json', ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    // No cookies, and so no browser login dialog: with credentials included, a 401 carrying a Basic
    // challenge (ISSUE_AUTH=client) makes the browser prompt (Fetch §4.4, HTTP-network-or-cache
    // fetch) instead of handing the answer to the panel, which asks for the client itself.
    credentials: 'omit',
  });
  const type = res.headers.get('content-type') ?? '';
  const text = await res.text();
  let body: unknown = text;
  if (type.includes('json')) {
    try {
      body = JSON.parse(text);
    } catch {
      /* keep the text */
    }
  }
  return { status: res.status, type, body: body as T };
}

/**
 * A refusal as one line: the factory's `{ error: { code, message } }`, or an OAuth error
 * `{ error, error_description }` (RFC 6749 §5.2), which ISSUE_AUTH=client's 401 answers.
 */
export function errorLine(answer: Answer): string {
  const body = answer.body as { error?: { code?: string; message?: string } | string; error_description?: string } | null;
  const error = body?.error;
  if (typeof error === 'string') return `${answer.status} ${error}${body?.error_description ? `: ${body.error_description}` : ''}`;
  return error ? `${answer.status} ${error.code}: ${error.message}` : `${answer.status} ${typeof answer.body === 'string' ? answer.body.slice(0, 200) : ''}`;
}

export interface KeyVersionInfo {
  kid: string;
  alg: string;
  createdAt: string;
  activateAt: string;
  retireAt: string | null;
  state: 'published' | 'signing' | 'verifying';
}

export interface KeyInfo {
  keyId: string;
  kid: string;
  alg: string;
  versions: KeyVersionInfo[];
  /** Added by the factory's automatic rotation, when it has one. */
  rotation?: { interval?: number | string; publishAhead?: number; nextAt?: string | null };
}

/** The most keyIds the console describes (each costs one request). */
export const MAX_KEYS_SHOWN = 50;

/** Every keyId (the first MAX_KEYS_SHOWN) with its versions. */
export async function loadKeys(): Promise<{ keys: KeyInfo[]; total: number }> {
  const list = await call<string[]>('/utils/keys');
  if (list.status !== 200 || !Array.isArray(list.body)) throw new Error(`GET /utils/keys: ${errorLine(list)}`);
  const ids = list.body.slice(0, MAX_KEYS_SHOWN);
  // GET /keys/:keyId creates a missing key: only keyIds the factory listed are asked for.
  const keys = await Promise.all(ids.map(async (id) => (await call<KeyInfo>(`/keys/${encodeURIComponent(id)}`)).body));
  return { keys: keys.filter((k) => Array.isArray(k?.versions)), total: list.body.length };
}

/** The factory's discovery document. */
export interface Discovery {
  issuer: string;
  jwks_uri: string;
  authorization_endpoint?: string;
  token_endpoint?: string;
  userinfo_endpoint?: string;
  [key: string]: unknown;
}

export async function loadDiscovery(): Promise<Discovery> {
  const answer = await call<Discovery>('/.well-known/openid-configuration');
  if (answer.status !== 200) throw new Error(`discovery: ${errorLine(answer)}`);
  return answer.body;
}
