/** The public members of a JWK per key type (RFC 7517/7518/8037): never d, p, q, dp, dq, qi, k. */
export const PUBLIC_MEMBERS: Readonly<Record<string, readonly string[]>> = {
  RSA: ['kty', 'n', 'e'],
  EC: ['kty', 'crv', 'x', 'y'],
  OKP: ['kty', 'crv', 'x'],
};

/** Why a JWK's public part cannot be published, or undefined when it can. */
export type PublicMembersProblem = { kind: 'unsupported-kty'; kty: string } | { kind: 'missing'; member: string };

/**
 * Picks the allow-listed public members of a JWK (an allow-list, so private members can never
 * slip through), or says what is wrong: an unsupported key type or a missing member.
 */
export function pickPublicMembers(jwk: Readonly<Record<string, unknown>>): { members: Record<string, string> } | { problem: PublicMembersProblem } {
  const names = PUBLIC_MEMBERS[String(jwk.kty)];
  if (!names) return { problem: { kind: 'unsupported-kty', kty: String(jwk.kty) } };
  const members: Record<string, string> = {};
  for (const name of names) {
    const value = jwk[name];
    if (typeof value !== 'string') return { problem: { kind: 'missing', member: name } };
    members[name] = value;
  }
  return { members };
}
