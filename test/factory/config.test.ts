import { describe, expect, it } from 'vitest';
import { listeningConfig, loadFactoryConfig } from '../../jwt-factory/config.js';

describe('loadFactoryConfig', () => {
  it('applies the documented defaults and freezes the result', () => {
    const config = loadFactoryConfig({});
    expect(config).toEqual({
      PORT: 5555,
      HOST: '127.0.0.1',
      KEYS_DIR: 'keys',
      ISSUER: 'https://jwt-factory/',
      PUBLIC_URL: 'http://127.0.0.1:5555',
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
      ROTATION_PUBLISH_AHEAD: 1260,
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
      TRUST_XFCC: false,
      KEY_STORE: 'file',
      KEY_STORE_POLL_INTERVAL: 5,
      METRICS_KEY_LABELS: 100,
      ROTATION_INTERVAL: 0,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('defaults PUBLIC_URL to the address it listens on: HOST and PORT, 127.0.0.1 for a wildcard HOST, brackets for IPv6', () => {
    expect(loadFactoryConfig({ PORT: '5600' }).PUBLIC_URL).toBe('http://127.0.0.1:5600');
    expect(loadFactoryConfig({ HOST: 'localhost', PORT: '6000' }).PUBLIC_URL).toBe('http://localhost:6000');
    expect(loadFactoryConfig({ HOST: '0.0.0.0', ISSUE_AUTH: 'open' }).PUBLIC_URL).toBe('http://127.0.0.1:5555');
    expect(loadFactoryConfig({ HOST: '::', ISSUE_AUTH: 'open' }).PUBLIC_URL).toBe('http://127.0.0.1:5555');
    expect(loadFactoryConfig({ HOST: '::1', PORT: '7000' }).PUBLIC_URL).toBe('http://[::1]:7000');
    expect(loadFactoryConfig({ HOST: '10.1.2.3', PORT: '7001', ISSUE_AUTH: 'open' }).PUBLIC_URL).toBe('http://10.1.2.3:7001');
    expect(loadFactoryConfig({ HOST: '0.0.0.0', PORT: '7002', ISSUE_AUTH: 'open', PUBLIC_URL: 'https://factory.example/' }).PUBLIC_URL).toBe('https://factory.example');
  });

  it('with PORT=0 puts the bound port into a defaulted PUBLIC_URL once listening, and keeps an explicit one as given', () => {
    const defaulted = loadFactoryConfig({ PORT: '0', HOST: '::', ISSUE_AUTH: 'open' });
    expect(defaulted.PUBLIC_URL).toBe('http://127.0.0.1:0');
    const listening = listeningConfig(defaulted, 41234);
    expect(listening.PUBLIC_URL).toBe('http://127.0.0.1:41234');
    expect(listening.PORT).toBe(0);
    expect(Object.isFrozen(listening)).toBe(true);
    const explicit = loadFactoryConfig({ PORT: '0', PUBLIC_URL: 'http://factory.local' });
    expect(listeningConfig(explicit, 41234).PUBLIC_URL).toBe('http://factory.local');
    const fixed = loadFactoryConfig({ PORT: '5600' });
    expect(listeningConfig(fixed, 5600)).toBe(fixed);
    expect(() => loadFactoryConfig({ PORT: '0', PUBLIC_URL: 'http://127.0.0.1:0' })).toThrow(/PUBLIC_URL: must not name port 0/);
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

  it('takes KEY_STORE file or a postgres:// URL, and with PostgreSQL demands an encryption key', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    expect(loadFactoryConfig({ KEY_STORE: 'postgres://u@db:5432/keys', KEY_ENCRYPTION_KEY: key }).KEY_STORE).toBe('postgres://u@db:5432/keys');
    expect(loadFactoryConfig({ KEY_STORE: 'postgres://u@db/keys', KEY_ENCRYPTION_KEY_FILE: '/run/secrets/kek' }).KEY_ENCRYPTION_KEY_FILE).toBe('/run/secrets/kek');
    expect(() => loadFactoryConfig({ KEY_STORE: 'postgres://u@db/keys' })).toThrow(/^Invalid setting KEY_ENCRYPTION_KEY: is required with a PostgreSQL KEY_STORE/);
    expect(() => loadFactoryConfig({ KEY_STORE: 'mysql://db' })).toThrow(/^Invalid setting KEY_STORE: must be file or a postgres:\/\/ URL$/);
    expect(() => loadFactoryConfig({ KEY_ENCRYPTION_KEY: key, KEY_ENCRYPTION_KEY_FILE: '/k' })).toThrow(/^Invalid setting KEY_ENCRYPTION_KEY_FILE: give KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE, not both/);
  });

  it('refuses a ROTATION_INTERVAL that does not exceed ROTATION_PUBLISH_AHEAD', () => {
    expect(loadFactoryConfig({ ROTATION_INTERVAL: '604800' }).ROTATION_INTERVAL).toBe(604800);
    expect(() => loadFactoryConfig({ ROTATION_INTERVAL: '1260' })).toThrow(/^Invalid setting ROTATION_INTERVAL: must exceed ROTATION_PUBLISH_AHEAD \(1260\)/);
    expect(loadFactoryConfig({ ROTATION_INTERVAL: '30', ROTATION_PUBLISH_AHEAD: '21' }).ROTATION_INTERVAL).toBe(30);
  });

  it('never echoes a bad secret setting: the key and the store URL (it may hold a password) are named, not shown', () => {
    const shortKey = Buffer.alloc(31, 9).toString('base64');
    expect(() => loadFactoryConfig({ KEY_ENCRYPTION_KEY: shortKey })).toThrow(/^Invalid setting KEY_ENCRYPTION_KEY: must be 32 random bytes in base64 \(openssl rand -base64 32\)$/);
    expect(() => loadFactoryConfig({ KEY_STORE: 'mysql://root:hunter2@db' })).toThrow(/^Invalid setting KEY_STORE: [^h]*$/);
  });

  it('refuses a TOKEN_TTL above MAX_TOKEN_TTL and a warning size above the limit', () => {
    expect(() => loadFactoryConfig({ TOKEN_TTL: '7200', MAX_TOKEN_TTL: '3600' })).toThrow(/^Invalid setting TOKEN_TTL: must not exceed MAX_TOKEN_TTL \(3600\)/);
    expect(() => loadFactoryConfig({ TOKEN_SIZE_WARN: '9000' })).toThrow(/^Invalid setting TOKEN_SIZE_WARN: must not exceed TOKEN_SIZE_LIMIT \(8192\)/);
  });
});
