import { Router, type Request, type Response } from 'express';
import { PUBLIC_ALGORITHMS } from '../config.js';
import type { FactoryDeps } from '../deps.js';
import type { JwksDocument } from '../jwks.js';
import { sendJwks } from './keys.js';

/** Discovery: the JWKS of every signing key and the OpenID configuration pointing at it. */
export function discoveryRouter(deps: FactoryDeps, jwks: { all(): JwksDocument }): Router {
  const router = Router();

  router.get('/.well-known/jwks.json', (req, res) => {
    sendJwks(deps, jwks.all(), req, res);
  });

  // Istio can find jwks_uri through `<issuer>/.well-known/openid-configuration`; issuer must equal the tokens' iss.
  const openidConfiguration = Object.freeze({
    issuer: deps.config.ISSUER,
    jwks_uri: `${deps.config.PUBLIC_URL}/.well-known/jwks.json`,
    id_token_signing_alg_values_supported: PUBLIC_ALGORITHMS,
    token_endpoint_auth_signing_alg_values_supported: PUBLIC_ALGORITHMS,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti'],
    // With OIDC_CONFIG every endpoint of the provider is named (OIDC Discovery 1.0 §3, RFC 8414 §2).
    ...deps.oidc?.metadata(),
  });
  const serve = (_req: Request, res: Response) => {
    res.set('Cache-Control', `public, max-age=${deps.config.JWKS_MAX_AGE}`);
    res.json(openidConfiguration);
  };
  router.get('/.well-known/openid-configuration', serve);
  // OIDC Discovery 1.0 §4: the document lives at the issuer's path + /.well-known/openid-configuration.
  const issuerPath = issuerPathOf(deps.config.ISSUER);
  if (deps.oidc && issuerPath !== '') router.get(`${issuerPath}/.well-known/openid-configuration`, serve);

  return router;
}

/** The path of an issuer URL without its trailing slash ('' for a bare origin or a non-URL issuer). */
function issuerPathOf(issuer: string): string {
  try {
    return new URL(issuer).pathname.replace(/\/+$/, '');
  } catch {
    return '';
  }
}
