import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import express from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, assertJsonDepth, byteSize, errorMiddleware, jsonBodyParser } from '../../lib/http.js';
import { silentLogger } from '../../lib/logger.js';

/**
 * The lean JSON reader (jsonBodyParser's own path) against body-parser itself on the same
 * bytes: the same status, the same error code, the same parsed body, over real sockets (raw
 * requests, so the headers are exactly the ones written here).
 */
const LIMIT = '1kb';

function echoApp(parser: express.RequestHandler) {
  const app = express();
  app.use(parser);
  app.post('/echo', (req, res) => {
    res.json({ body: req.body === undefined ? '(undefined)' : req.body });
  });
  app.use(errorMiddleware(silentLogger()));
  return app;
}

const servers: Array<ReturnType<express.Express['listen']>> = [];
let lean = '';
let general = '';
beforeAll(async () => {
  const start = async (app: express.Express) => {
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await once(server, 'listening');
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  lean = await start(echoApp(jsonBodyParser(LIMIT)));
  // body-parser alone, with the same limit and depth check: what the lean path must agree with.
  general = await start(echoApp(express.json({ limit: LIMIT, verify: (_req, _res, body) => assertJsonDepth(body) })));
});
afterAll(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

interface Answer {
  status: number;
  code?: string;
  body?: unknown;
}

/** POSTs `body` with exactly `headers` (Content-Length added unless given or chunked). */
function post(hostPort: string, headers: IncomingHttpHeaders, body: Buffer): Promise<Answer> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port: Number(port), method: 'POST', path: '/echo', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { body?: unknown; error?: { code: string } };
        resolve({ status: res.statusCode!, ...(json.error ? { code: json.error.code } : { body: json.body }) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };
const withLength = (headers: IncomingHttpHeaders, body: Buffer) =>
  headers['transfer-encoding'] ? headers : { ...headers, 'content-length': String(body.length) };

async function both(headers: IncomingHttpHeaders, body: Buffer | string): Promise<[Answer, Answer]> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const h = withLength(headers, bytes);
  return Promise.all([post(lean, h, bytes), post(general, h, bytes)]);
}

describe('jsonBodyParser answers as body-parser does', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  it.each<[string, IncomingHttpHeaders, string | Buffer]>([
    ['an object', json, '{"token":"a.b.c","aud":["x","y"],"n":1.5}'],
    ['an array', json, '[1,2,{"a":null}]'],
    ['an empty body (as {})', json, ''],
    ['whitespace around', json, ' \n\t{"a":1}\r\n '],
    ['a UTF-8 BOM first', json, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":"é"}')])],
    ['non-ASCII text', json, '{"name":"Ålice ☃ 𝄞"}'],
    ['the charset named', { 'content-type': 'application/json; charset=utf-8' }, '{"a":1}'],
    ['the charset quoted, in capitals', { 'content-type': 'Application/JSON;Charset="UTF-8"' }, '{"a":1}'],
    ['another charset', { 'content-type': 'application/json; charset=latin1' }, '{"a":1}'],
    ['a UTF-16 charset', { 'content-type': 'application/json; charset=utf-16' }, '{"a":1}'],
    ['gzip', { ...json, 'content-encoding': 'gzip' }, gzipSync('{"zipped":true}')],
    ['a lying gzip', { ...json, 'content-encoding': 'gzip' }, '{"a":1}'],
    ['chunked', { ...json, 'transfer-encoding': 'chunked' }, '{"chunked":true}'],
    ['over the limit', json, `{"a":"${'x'.repeat(1100)}"}`],
    ['exactly at the limit', json, `{"a":"${'x'.repeat(1024 - 8)}"}`],
    ['a string at the top', json, '"just a string"'],
    ['a number at the top', json, '42'],
    ['whitespace only', json, '   '],
    ['malformed JSON', json, '{"a":'],
    ['invalid UTF-8 in a string', json, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    [`${MAX_JSON_DEPTH} levels`, json, deep(MAX_JSON_DEPTH)],
    [`${MAX_JSON_DEPTH + 1} levels`, json, deep(MAX_JSON_DEPTH + 1)],
    ['many brackets inside strings, shallow', json, JSON.stringify({ a: '['.repeat(200) })],
    ['another media type', { 'content-type': 'text/plain' }, '{"a":1}'],
    ['application/*+json', { 'content-type': 'application/jose+json' }, '{"a":1}'],
    ['no Content-Type', {}, '{"a":1}'],
  ])('%s', async (_name, headers, body) => {
    const [fromLean, fromGeneral] = await both(headers, body);
    expect(fromLean).toEqual(fromGeneral);
  });

  it('a body cut short of its Content-Length answers nothing broken: the server stays up', async () => {
    const [host, port] = lean.split(':');
    const req = httpRequest({ host, port: Number(port), method: 'POST', path: '/echo', headers: { ...json, 'content-length': '100' } });
    req.on('error', () => {});
    req.write('{"a":');
    await new Promise((r) => setTimeout(r, 50));
    req.destroy();
    expect(await post(lean, withLength(json, Buffer.from('{"after":1}')), Buffer.from('{"after":1}'))).toEqual({ status: 200, body: { after: 1 } });
  });

  it('any JSON value the fast path reads parses as body-parser parses it (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
        const [fromLean, fromGeneral] = await both(json, JSON.stringify(value) ?? '');
        expect(fromLean).toEqual(fromGeneral);
      }),
      { numRuns: 60 },
    );
  });
});

describe('byteSize reads a size as body-parser does', () => {
  it.each<[string | number, number]>([['100kb', 102400], ['1mb', 1048576], ['512', 512], ['10 b', 10], ['2KB', 2048], [4096, 4096]])('%s is %d bytes', (given, bytes) => {
    expect(byteSize(given)).toBe(bytes);
  });
  it('refuses what is not a size', () => {
    expect(() => byteSize('lots')).toThrow(/not a size/);
  });
});
