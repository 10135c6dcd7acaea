import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createHttpClient } from '../../lib/httpclient.js';
import { silentLogger } from '../../lib/logger.js';
import { createWebui } from '../../webui/app.js';

/** The webui's own answers; the page in a browser behind the gateway is in test/mesh/login/browser.test.ts. */

const app = createWebui({ backends: { serviceb: 'http://127.0.0.1:1' }, client: createHttpClient({ timeoutMs: 1000 }), logger: silentLogger() });
// header.payload.signature with payload {"sub":"alice","iss":"https://op/","scope":"api","jti":"j"}
const token = `e30.${Buffer.from(JSON.stringify({ sub: 'alice', iss: 'https://op/', scope: 'api', jti: 'j' })).toString('base64url')}.sig`;

describe('the webui app', () => {
  it('GET / serves the page with a same-origin-only content security policy', async () => {
    const res = await request(app).get('/');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toBe("default-src 'self'; frame-ancestors 'none'");
    expect(res.text).toContain('<script src="/webui.js" defer></script>');
  });

  it('GET /api/me shows the user\'s claims and the forwarded name, never the token', async () => {
    const res = await request(app).get('/api/me').set('authorization', `Bearer ${token}`).set('x-user-name', 'Zo%C3%AB');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ sub: 'alice', iss: 'https://op/', scope: 'api', name: 'Zoë' });
    expect(res.text).not.toContain(token.split('.')[1]);
  });

  it('without the gateway in front there is no user: 401 token_missing', async () => {
    const res = await request(app).get('/api/me');
    expect(res.status).toBe(401);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe('token_missing');
  });

  it('an unknown backend is 404, one that is down 503 dependency_down', async () => {
    const unknown = await request(app).get('/api/constructor').set('authorization', `Bearer ${token}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('route_not_found');
    const down = await request(app).get('/api/serviceb').set('authorization', `Bearer ${token}`);
    expect(down.status).toBe(503);
    expect(down.body.error).toMatchObject({ code: 'dependency_down', dependency: 'serviceb' });
  });
});
