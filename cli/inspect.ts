import { readFile } from 'node:fs/promises';
import { TokenError, verificationKeysFromJwks, verifyJwt, type VerificationKey } from '../lib/jwt.js';
import { decodeToken, MalformedTokenError } from '../lib/tokeninfo.js';
import { CommandFailed, UsageError, parseCommand, type Command, type CommandSpec, type Io } from './command.js';
import { FACTORY_OPTION, call, factoryBase, factoryUrl, printJson, readTokenInput, refusal } from './io.js';

const TOKEN_FILE = { 'token-file': { type: 'string', value: '<file>', help: 'read the token from this file (else the argument, else stdin)' } } as const;

const decodeSpec = {
  name: 'decode',
  brief: 'show a token\'s header, claims and times (nothing verified, nothing sent)',
  args: '[<token> | -]',
  maxPositionals: 1,
  summary: 'Prints a token\'s header and claims, its times as dates and as "expires in 12 min". Verifies nothing and\nsends nothing anywhere.',
  options: { ...TOKEN_FILE },
} satisfies CommandSpec;

/** `jwt decode`: header, claims and times, locally. */
export const decode: Command = {
  spec: decodeSpec,
  async run(argv, io) {
    const { values, positionals } = parseCommand(decodeSpec, argv);
    const token = await readTokenInput(positionals[0], values['token-file'] as string | undefined, io);
    let decoded;
    try {
      decoded = decodeToken(token, io.now());
    } catch (err) {
      if (err instanceof MalformedTokenError) throw new CommandFailed(err.message, { error: { name: 'JsonWebTokenError', code: err.code, message: err.message } });
      throw err;
    }
    if (values.json) {
      printJson(io, decoded);
      return 0;
    }
    const lines = [`header: ${JSON.stringify(decoded.header, null, 2)}`, `claims: ${JSON.stringify(decoded.payload, null, 2)}`];
    for (const t of decoded.times) lines.push(`${t.claim}: ${t.date} (${t.relative})`);
    lines.push(`status: ${decoded.status} (not verified: use jwt verify)`, `size: ${decoded.bytes} bytes`);
    io.out(`${lines.join('\n')}\n`);
    return 0;
  },
};

const verifySpec = {
  name: 'verify',
  brief: 'verify a token on the factory, against a JWKS file or a provider\'s JWKS',
  args: '[<token> | -]',
  maxPositionals: 1,
  summary: `Verifies a token's signature, times (60 s of skew, as Envoy) and, when given, iss, aud and sub:
  --key <keyId>          on the factory (POST /verify/<keyId>; --aud and --sub are required there)
  --jwks <file>          locally, against a JWKS file
  --discovery <url>      locally, against the JWKS of an OpenID provider (issuer URL or its
                         .well-known/openid-configuration); the issuer it names is required
  (none)                 locally, against the factory's /.well-known/jwks.json`,
  options: {
    ...FACTORY_OPTION,
    ...TOKEN_FILE,
    key: { type: 'string', value: '<keyId>', help: 'verify on the factory with this keyId' },
    jwks: { type: 'string', value: '<file>', help: 'verify against this JWKS file' },
    discovery: { type: 'string', value: '<url>', help: 'verify against this provider\'s JWKS' },
    iss: { type: 'string', value: '<iss>', help: 'required issuer' },
    aud: { type: 'string', value: '<aud>', help: 'accepted audience', multiple: true },
    sub: { type: 'string', value: '<sub>', help: 'required subject' },
  },
  notes: 'A refused token prints the check that failed as /verify names it (TokenExpiredError, JsonWebTokenError and its code).',
} satisfies CommandSpec;

/** The keys of a JWKS document that may verify; a document without keys is a CommandFailed naming its source. */
async function keysOf(doc: unknown, source: string): Promise<VerificationKey[]> {
  try {
    return await verificationKeysFromJwks(doc);
  } catch (err) {
    throw new CommandFailed(`${source}: ${(err as Error).message}`, { error: { code: 'invalid_jwks', source } });
  }
}

/** Where a provider's discovery document lives: the URL itself, or the issuer plus the well-known path (RFC 8414 §3, OpenID Discovery §4). */
export const discoveryUrl = (url: string) => (url.includes('/.well-known/') ? url : `${url.replace(/\/+$/, '')}/.well-known/openid-configuration`);

async function fetchJson(url: string, what: string): Promise<unknown> {
  const answer = await call(url);
  if (answer.status !== 200 || typeof answer.body !== 'object') throw refusal(answer, what);
  return answer.body;
}

/** The JWKS and issuer of a provider, from its discovery document. */
async function discover(url: string): Promise<{ issuer: string | undefined; jwks: unknown; source: string }> {
  const doc = (await fetchJson(discoveryUrl(url), `discovery at ${discoveryUrl(url)}`)) as { issuer?: string; jwks_uri?: string };
  if (typeof doc.jwks_uri !== 'string') throw new CommandFailed(`${discoveryUrl(url)} names no jwks_uri`, { error: { code: 'invalid_discovery' } });
  return { issuer: doc.issuer, jwks: await fetchJson(doc.jwks_uri, `JWKS at ${doc.jwks_uri}`), source: doc.jwks_uri };
}

/** How a refused token is printed: the name, the code and the message /verify gives. */
const describeRefusal = (error: Record<string, unknown>) =>
  `refused: ${error.name} (${error.code}): ${error.message}${error.expiredAt ? `, expired at ${error.expiredAt}` : ''}${error.date ? `, valid from ${error.date}` : ''}`;

/** `jwt verify`: on the factory, or locally against a JWKS file or a provider's JWKS. */
export const verify: Command = {
  spec: verifySpec,
  async run(argv, io) {
    const { values, positionals } = parseCommand(verifySpec, argv);
    const modes = ['key', 'jwks', 'discovery'].filter((m) => values[m] !== undefined);
    if (modes.length > 1) throw new UsageError(`--${modes.join(' and --')} are alternatives: pick one`);
    const aud = values.aud as string[] | undefined;
    const token = await readTokenInput(positionals[0], values['token-file'] as string | undefined, io);
    const base = factoryBase(values, io);
    let result: { valid: boolean; claims?: unknown; kid?: string; error?: Record<string, unknown> };
    if (values.key !== undefined) {
      if (!aud?.length || values.sub === undefined) throw new UsageError('the factory\'s /verify needs --aud and --sub');
      const answer = await call(factoryUrl(base, `/verify/${encodeURIComponent(values.key as string)}`), {
        method: 'POST',
        body: { token, aud: aud.length === 1 ? aud[0] : aud, sub: values.sub, ...(values.iss !== undefined ? { iss: values.iss } : {}) },
      });
      if (answer.status !== 200 && answer.status !== 403) throw refusal(answer, `the factory could not verify with ${values.key}`);
      result = answer.body as typeof result;
    } else {
      let keys: VerificationKey[];
      let issuer = values.iss as string | undefined;
      if (values.jwks !== undefined) {
        const file = values.jwks as string;
        let doc: unknown;
        try {
          doc = JSON.parse(await readFile(file, 'utf8'));
        } catch (err) {
          throw new UsageError(`--jwks ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        keys = await keysOf(doc, file);
      } else if (values.discovery !== undefined) {
        const found = await discover(values.discovery as string);
        issuer ??= found.issuer;
        keys = await keysOf(found.jwks, found.source);
      } else {
        // The factory's own JWKS at the URL we were given: its discovery document names jwks_uri under
        // PUBLIC_URL, which is often not how this machine reaches it (a port-forward, a container).
        const doc = (await fetchJson(factoryUrl(base, '/.well-known/openid-configuration'), 'the factory\'s discovery')) as { issuer?: string };
        issuer ??= doc.issuer;
        keys = await keysOf(await fetchJson(factoryUrl(base, '/.well-known/jwks.json'), 'the factory\'s JWKS'), 'the factory\'s JWKS');
      }
      try {
        const verified = await verifyJwt(token, keys, { issuer, audience: aud, subject: values.sub as string | undefined, now: io.now() });
        result = { valid: true, kid: verified.kid, claims: verified.payload };
      } catch (err) {
        if (!(err instanceof TokenError)) throw err;
        result = { valid: false, error: err.toJSON() };
      }
    }
    if (values.json) printJson(io, result);
    else if (result.valid) io.out(`valid${result.kid ? ` (kid ${result.kid})` : ''}\nclaims: ${JSON.stringify(result.claims, null, 2)}\n`);
    else io.out(`${describeRefusal(result.error ?? {})}\n`);
    return result.valid ? 0 : 1;
  },
};
