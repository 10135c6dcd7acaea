import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { cookieJar, parseSetCookie } from './cookies.js';

const NOW = new Date('2026-06-01T12:00:00Z');

describe('the test cookie jar', () => {
  it('keeps a value that holds "=" whole: the pair splits at its first "=" only', () => {
    expect(parseSetCookie('OauthHMAC=dGVzdA==; path=/; Max-Age=3600; secure; HttpOnly', NOW)).toEqual({ name: 'OauthHMAC', value: 'dGVzdA==', deletes: false });
    expect(parseSetCookie('state=a=b=c', NOW)).toEqual({ name: 'state', value: 'a=b=c', deletes: false });
    expect(cookieJar('', ['OauthHMAC=dGVzdA==; path=/', 'jwtf_session=abc; Path=/; HttpOnly'], NOW)).toBe('OauthHMAC=dGVzdA==; jwtf_session=abc');
  });

  it('reads its own Cookie header back with such values, and replaces a cookie set again', () => {
    const jar = cookieJar('a=x==; b=1', ['b=2; Path=/'], NOW);
    expect(jar).toBe('a=x==; b=2');
    expect(cookieJar(jar, [], NOW)).toBe(jar);
  });

  it('deletes on an empty value, Max-Age 0 or less, or an Expires not after now; a valid Max-Age wins over Expires', () => {
    const jar = 'a=1; b=2; c=3; d=4; e=5';
    const lines = [
      'a=; Path=/',
      'b=gone; max-age=0',
      'c=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT',
      'd=kept; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT',
      'e=kept; Expires=Wed, 01 Jul 2026 00:00:00 GMT',
    ];
    expect(cookieJar(jar, lines, NOW)).toBe('d=kept; e=kept');
  });

  it('ignores a line without a name-value pair, as a browser does', () => {
    expect(parseSetCookie('HttpOnly; Path=/', NOW)).toBeUndefined();
    expect(cookieJar('a=1', ['junk'], NOW)).toBe('a=1');
  });

  it("carries express's own Set-Cookie lines: a signed-looking value with '=' and clearCookie's deletion", async () => {
    const app = express();
    app.get('/set', (_req, res) => void res.cookie('token', 'eyJ=.e30=.c2ln==', { httpOnly: true, encode: String }).cookie('other', 'v').end());
    app.get('/clear', (_req, res) => void res.clearCookie('other').end());
    const set = await request(app).get('/set');
    const jar = cookieJar('', set.headers['set-cookie']);
    expect(jar).toBe('token=eyJ=.e30=.c2ln==; other=v');
    const cleared = await request(app).get('/clear').set('Cookie', jar);
    expect(cookieJar(jar, cleared.headers['set-cookie'])).toBe('token=eyJ=.e30=.c2ln==');
  });
});
