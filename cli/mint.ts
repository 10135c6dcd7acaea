import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { JWTPayload } from 'jose';
import type { Algorithm } from '../jwt-factory/config.js';
import { toVersion } from '../jwt-factory/keys.js';
import { describeToken, signPayload } from '../jwt-factory/tokens.js';
import { VARIANTS } from '../jwt-factory/variants.js';
import { writeFileAtomic } from '../lib/files.js';
import { epochSeconds } from '../lib/jwt.js';
import { KEY_ID_PATTERN } from '../lib/keyid.js';
import { humanDuration } from '../lib/tokeninfo.js';
import { CommandFailed, UsageError, integerFlag, parseCommand, type Command, type CommandSpec, type Io, type Values } from './command.js';
import { FACTORY_OPTION, call, factoryBase, factoryUrl, printJson, refusal, type CallAnswer } from './io.js';

/** gen-jwt.py's default issuer (istio/istio security/tools/jwt/samples/gen-jwt.py). */
export const GEN_JWT_ISSUER = 'testing@secure.istio.io';

const spec = {
  name: 'mint',
  brief: 'mint a token with a factory keyId or a PEM key file (gen-jwt.py flags)',
  args: '<keyId> | <key.pem>',
  maxPositionals: 1,
  summary: `Mints a token: with a factory keyId through POST /issueToken (the factory signs), or with a local
PEM private key like Istio's gen-jwt.py (nothing leaves the machine). The flags mean what they mean
for gen-jwt.py, so its invocations work as they are: gen-jwt.py key.pem --iss a --aud b,c becomes
jwt mint key.pem --iss a --aud b,c (single-dash -iss, -jwks=out.json work too).`,
  options: {
    ...FACTORY_OPTION,
    iss: { type: 'string', value: '<iss>', help: `iss claim (factory: its ISSUER; key file: ${GEN_JWT_ISSUER}, as gen-jwt.py)` },
    aud: { type: 'string', value: '<a,b>', help: 'aud claim; a comma-separated value becomes a list' },
    sub: { type: 'string', value: '<sub>', help: 'sub claim (default: --iss when given, as gen-jwt.py; else the keyId)' },
    claims: { type: 'string', multiple: true, value: '<k:v,k2:v2>', help: 'other string claims' },
    expire: { type: 'string', value: '<seconds>', help: 'lifetime (key file: any, as gen-jwt.py; factory: at most its MAX_TOKEN_TTL)', default: '3600' },
    jwks: { type: 'string', value: '<out.json>', help: 'also write the public JWKS that verifies the token to this file' },
    'key-file': { type: 'string', value: '<key.pem>', help: 'sign with this PEM private key (RSA: RS256, P-256: ES256, P-384: ES384, Ed25519: EdDSA)' },
    alg: { type: 'string', value: '<alg>', help: 'with a key file: RS384, RS512 or PS256 for an RSA key instead of RS256' },
    variant: { type: 'string', value: '<name>', help: `factory only: a negative token (${VARIANTS.join(', ')})` },
    expired: { type: 'boolean', help: 'factory only: a token that expired an hour ago (?expired=1)' },
    out: { type: 'string', value: '<file>', help: 'write the token to this file (mode 0600) instead of stdout' },
  },
  notes: `The token is the command's output: stdout (or --out). --json prints { token, kid, alg, iat, exp, jti, bytes }.
Examples:
  jwt mint servicea --aud serviceb
  jwt mint key.pem --iss testing@secure.istio.io --aud foo,bar --claims=email:foo@example.com --jwks jwks.json --expire 300`,
} satisfies CommandSpec;

/** `--claims k:v,k2:v2` (repeatable): string claims, split at the first colon so URLs survive. */
export function parseClaimPairs(items: string[] | undefined): Record<string, string> {
  const claims: Record<string, string> = {};
  for (const item of (items ?? []).flatMap((i) => i.split(','))) {
    if (item === '') continue;
    const colon = item.indexOf(':');
    if (colon <= 0) throw new UsageError(`--claims expects name:value pairs separated by commas, got "${item}"`);
    claims[item.slice(0, colon)] = item.slice(colon + 1);
  }
  return claims;
}

/** gen-jwt.py's aud: a value with a comma is a list. */
const audOf = (aud: string | undefined) => (aud === undefined ? undefined : aud.includes(',') ? aud.split(',').filter((a) => a !== '') : aud);

/** The algorithm a PEM key signs with, gen-jwt.py's RS256 for RSA. */
function algOfKey(key: KeyObject, requested: string | undefined): Algorithm {
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    if (requested === undefined) return 'RS256';
    if (['RS256', 'RS384', 'RS512', 'PS256'].includes(requested)) return requested as Algorithm;
    throw new UsageError(`--alg ${requested} does not fit an RSA key (RS256, RS384, RS512, PS256)`);
  }
  const fixed: Record<string, Algorithm | undefined> = { ed25519: 'EdDSA', ec: key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ES256' : key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'ES384' : undefined };
  const alg = fixed[type ?? ''];
  if (!alg) throw new UsageError(`the key file holds a ${type} key${type === 'ec' ? ` on ${key.asymmetricKeyDetails?.namedCurve}` : ''}: use RSA, P-256, P-384 or Ed25519`);
  if (requested !== undefined && requested !== alg) throw new UsageError(`--alg ${requested} does not fit this key (${alg})`);
  return alg;
}

async function mintWithKeyFile(file: string, values: Values, io: Io) {
  if (values.variant !== undefined || values.expired) throw new UsageError('--variant and --expired ask the factory: use a keyId, not a key file');
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${file}: ${code === 'ENOENT' ? 'no such file' : 'not a PEM private key'}`);
  }
  const alg = algOfKey(key, values.alg as string | undefined);
  const now = epochSeconds(io.now());
  const version = await toVersion(key, alg, { createdAt: io.now() });
  const iss = (values.iss as string | undefined) ?? GEN_JWT_ISSUER;
  const aud = audOf(values.aud as string | undefined);
  const payload: JWTPayload = {
    exp: now + integerFlag('expire', values.expire as string, 1)!,
    iat: now,
    iss,
    sub: (values.sub as string | undefined) ?? iss,
    ...(aud !== undefined ? { aud } : {}),
    ...parseClaimPairs(values.claims as string[] | undefined),
  };
  const token = await signPayload(version, payload);
  return { issued: describeToken(token, version, payload), jwks: { keys: [version.publicJwk] } };
}

const errorCode = (body: unknown) => (body as { error?: { code?: unknown } } | undefined)?.error?.code;

/**
 * gen-jwt.py users pass lifetimes of a century (--expire 3153600000); the factory caps ?ttl= at its
 * MAX_TOKEN_TTL, because a rotated-out key is kept only that long. The refusal says the cap and the
 * way out: a key file signs locally with any lifetime, as gen-jwt.py does.
 */
function lifetimeRefused(answer: CallAnswer, asked: string): CommandFailed {
  const message = String((answer.body as { error?: { message?: unknown } }).error?.message ?? '');
  const max = /between 1 and (\d+)/.exec(message)?.[1];
  const cap = max === undefined ? "the factory's MAX_TOKEN_TTL" : `MAX_TOKEN_TTL = ${max} s (${humanDuration(Number(max))})`;
  return new CommandFailed(
    `the factory mints tokens for at most ${cap}, and --expire asks for ${asked} s: use --expire ${max ?? '<MAX_TOKEN_TTL>'} or less, raise MAX_TOKEN_TTL on the factory, or sign locally with a PEM key file (jwt mint key.pem --expire ${asked}: any lifetime, as gen-jwt.py)`,
    { status: answer.status, error: { ...(answer.body as { error: object }).error, ...(max !== undefined ? { maxTokenTtl: Number(max) } : {}) } },
  );
}

async function mintWithFactory(keyId: string, values: Values, io: Io) {
  if (values.alg !== undefined) throw new UsageError('--alg applies to a key file; a factory key has its own algorithm');
  const variant = values.variant as string | undefined;
  if (variant !== undefined && !(VARIANTS as readonly string[]).includes(variant)) throw new UsageError(`--variant must be one of ${VARIANTS.join(', ')} (got "${variant}")`);
  const iss = values.iss as string | undefined;
  const sub = (values.sub as string | undefined) ?? iss;
  const aud = audOf(values.aud as string | undefined);
  const claims = { ...(iss ? { iss } : {}), ...(sub ? { sub } : {}), ...(aud !== undefined ? { aud } : {}), ...parseClaimPairs(values.claims as string[] | undefined) };
  const query = new URLSearchParams({ format: 'json', ttl: String(integerFlag('expire', values.expire as string, 1)) });
  if (variant) query.set('variant', variant);
  if (values.expired) query.set('expired', '1');
  const base = factoryBase(values, io);
  const answer = await call(factoryUrl(base, `/issueToken/${encodeURIComponent(keyId)}?${query}`), { method: 'POST', body: claims });
  if (answer.status === 400 && errorCode(answer.body) === 'invalid_ttl') throw lifetimeRefused(answer, query.get('ttl')!);
  if (answer.status !== 200) throw refusal(answer, `the factory refused to mint for ${keyId}`);
  let jwks: unknown;
  if (values.jwks !== undefined) {
    const keys = await call(factoryUrl(base, `/keys/${encodeURIComponent(keyId)}/jwks.json`));
    if (keys.status !== 200) throw refusal(keys, `the factory's JWKS for ${keyId}`);
    jwks = keys.body;
  }
  return { issued: answer.body as Record<string, unknown>, jwks };
}

/** `jwt mint`: a factory keyId or a local PEM key, gen-jwt.py's flags. */
export const mint: Command = {
  spec,
  async run(argv, io) {
    const { values, positionals } = parseCommand(spec, argv);
    const target = (values['key-file'] as string | undefined) ?? positionals[0];
    if (target === undefined) throw new UsageError('name a factory keyId or a PEM key file');
    const isFile = values['key-file'] !== undefined || target.endsWith('.pem') || target.includes('/') || !KEY_ID_PATTERN.test(target);
    const { issued, jwks } = isFile ? await mintWithKeyFile(target, values, io) : await mintWithFactory(target, values, io);
    if (values.jwks !== undefined) {
      if (!jwks) throw new CommandFailed('no JWKS to write');
      // Public keys only (the factory's allow-list, or the key file's public JWK): readable by others.
      await writeFileAtomic(values.jwks as string, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o644 });
    }
    const token = String(issued.token);
    if (values.out !== undefined) await writeFileAtomic(values.out as string, `${token}\n`, { mode: 0o600 });
    if (values.json) printJson(io, values.out !== undefined ? { ...issued, token: undefined, out: values.out } : issued);
    else if (values.out === undefined) io.out(`${token}\n`);
    return 0;
  },
};
