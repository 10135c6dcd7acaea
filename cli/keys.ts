import { writeFileAtomic } from '../lib/files.js';
import { integerFlag, parseCommand, UsageError, type Command, type CommandSpec } from './command.js';
import { FACTORY_OPTION, call, factoryBase, factoryUrl, printJson, refusal } from './io.js';

const jwksSpec = {
  name: 'jwks',
  brief: 'print the factory\'s public JWKS, all keys or one keyId\'s',
  args: '[<keyId>]',
  maxPositionals: 1,
  summary: "Prints the factory's public JWKS: every key (/.well-known/jwks.json) or one keyId's (/keys/<keyId>/jwks.json).",
  options: { ...FACTORY_OPTION, out: { type: 'string', value: '<file>', help: 'write it to this file instead of stdout' } },
} satisfies CommandSpec;

/** `jwt jwks`: the factory's public keys. */
export const jwks: Command = {
  spec: jwksSpec,
  async run(argv, io) {
    const { values, positionals } = parseCommand(jwksSpec, argv);
    const path = positionals[0] === undefined ? '/.well-known/jwks.json' : `/keys/${encodeURIComponent(positionals[0])}/jwks.json`;
    const answer = await call(factoryUrl(factoryBase(values, io), path));
    if (answer.status !== 200) throw refusal(answer, `GET ${path}`);
    const text = `${JSON.stringify(answer.body, null, 2)}\n`;
    // A JWKS holds public members only: readable by others, like any published key.
    if (values.out !== undefined) await writeFileAtomic(values.out as string, text, { mode: 0o644 });
    else io.out(text);
    return 0;
  },
};

const rotateSpec = {
  name: 'rotate',
  brief: 'rotate a factory key, optionally published ahead of signing',
  args: '<keyId>',
  maxPositionals: 1,
  summary: `Rotates a factory key (POST /keys/<keyId>/rotate): a new key is published now and signs after
--publish-ahead seconds; the old one keeps verifying until it retires. In a mesh use 1200 or more:
istiod refetches a jwksUri every 20 min, and a token signed by a key it has not fetched is refused.`,
  options: { ...FACTORY_OPTION, 'publish-ahead': { type: 'string', value: '<seconds>', help: "seconds the new key is published before it signs (default: the factory's ROTATION_PUBLISH_AHEAD)" } },
} satisfies CommandSpec;

/** `jwt rotate`: a new key version, published ahead when asked. */
export const rotate: Command = {
  spec: rotateSpec,
  async run(argv, io) {
    const { values, positionals } = parseCommand(rotateSpec, argv);
    const keyId = positionals[0];
    if (keyId === undefined) throw new UsageError('name the keyId to rotate');
    const ahead = integerFlag('publish-ahead', values['publish-ahead'] as string | undefined);
    const path = `/keys/${encodeURIComponent(keyId)}/rotate${ahead === undefined ? '' : `?publishAhead=${ahead}`}`;
    const answer = await call(factoryUrl(factoryBase(values, io), path), { method: 'POST' });
    if (answer.status !== 200) throw refusal(answer, `rotating ${keyId}`);
    const body = answer.body as { kid: string; alg: string; activateAt: string; previous: Array<{ kid: string; retireAt: string }> };
    if (values.json) printJson(io, body);
    else {
      const lines = [`${keyId}: new key ${body.kid} (${body.alg}), published now, signs from ${body.activateAt}`];
      for (const p of body.previous) lines.push(`  ${p.kid} keeps verifying until ${p.retireAt}`);
      io.out(`${lines.join('\n')}\n`);
    }
    return 0;
  },
};
