import { describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../jwt-factory/config.js';

describe('loadFactoryConfig', () => {
  it('applies the documented defaults and freezes the result', () => {
    const config = loadFactoryConfig({});
    expect(config).toEqual({
      PORT: 5555,
      HOST: '127.0.0.1',
      KEYS_DIR: 'keys',
      ISSUER: 'https://jwt-factory/',
      PUBLIC_URL: 'http://localhost:5555',
      ALGORITHM: 'RS256',
      TOKEN_TTL: 3600,
      MAX_TOKEN_TTL: 86400,
      CLOCK_TOLERANCE: 60,
      BODY_LIMIT: '100kb',
      JWKS_MAX_AGE: 60,
      WORKERS: 1,
      LOG_LEVEL: 'info',
      TOKEN_SIZE_WARN: 4096,
      TOKEN_SIZE_LIMIT: 8192,
      TOKEN_SIZE_POLICY: 'warn',
      SHUTDOWN_GRACE: 10,
      ROTATION_PUBLISH_AHEAD: 0,
      MESH_FETCH_JWKS: false,
      MESH_FETCH_TIMEOUT_MS: 5000,
      MAX_KEY_VERSIONS: 5,
      KEYGEN_CONCURRENCY: 1,
      KEYGEN_QUEUE: 32,
      KEYGEN_MAX_WAIT_MS: 3000,
      HEADERS_TIMEOUT_MS: 5000,
      REQUEST_TIMEOUT_MS: 10000,
      MAX_CONNECTIONS: 1000,
      MAX_KEYS: 100000,
      OIDC_KEY_ID: 'oidc',
      OIDC_ALG: 'RS256',
      OIDC_SESSION_TTL: 28800,
      OIDC_LOCKOUT_AFTER: 5,
      ISSUE_AUTH: 'open',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('drops a trailing slash from PUBLIC_URL so jwks_uri has one slash', () => {
    expect(loadFactoryConfig({ PUBLIC_URL: 'https://issuer.example/' }).PUBLIC_URL).toBe('https://issuer.example');
  });

  it.each([
    ['PORT', '70000'],
    ['ALGORITHM', 'HS512'],
    ['TOKEN_TTL', '-5'],
    ['PUBLIC_URL', 'not a url'],
    ['BODY_LIMIT', 'lots'],
    ['WORKERS', '0'],
    ['TOKEN_SIZE_POLICY', 'maybe'],
    ['LOG_LEVEL', 'loud'],
  ])('names %s in the error for a bad value', (variable, value) => {
    expect(() => loadFactoryConfig({ [variable]: value })).toThrow(new RegExp(`^Invalid setting ${variable}: .*\\(got "${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\)`));
  });

  it('refuses a TOKEN_TTL above MAX_TOKEN_TTL and a warning size above the limit', () => {
    expect(() => loadFactoryConfig({ TOKEN_TTL: '7200', MAX_TOKEN_TTL: '3600' })).toThrow(/^Invalid setting TOKEN_TTL: must not exceed MAX_TOKEN_TTL \(3600\)/);
    expect(() => loadFactoryConfig({ TOKEN_SIZE_WARN: '9000' })).toThrow(/^Invalid setting TOKEN_SIZE_WARN: must not exceed TOKEN_SIZE_LIMIT \(8192\)/);
  });
});
