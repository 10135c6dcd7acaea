import { Writable } from 'node:stream';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../lib/errors.js';
import { errorMiddleware, requestLogger } from '../../lib/http.js';
import fc from 'fast-check';
import { createLineWriter, createLogger, type LineFields } from '../../lib/logger.js';

/** An app whose routes fail in each way, logging at `level` into an array of parsed lines. */
function appAt(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      cb();
    },
  });
  const logger = createLogger({ level, name: 'test' }, sink);
  const app = express();
  app.use(requestLogger(logger));
  app.get('/boom', () => {
    throw Object.assign(new TypeError('cannot read x of undefined'), { code: 'ERR_TEST' });
  });
  app.get('/refused', () => {
    throw new AppError('bad_thing', 400, 'That is not allowed');
  });
  app.get('/down', () => {
    throw new AppError('dependency_down', 503, 'serviceb is not reachable');
  });
  app.use(errorMiddleware(logger));
  return { app, lines };
}

const errorsOf = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.msg !== 'request' && l.msg !== 'request received');

describe('error log lines', () => {
  it('an unexpected error is one line with name, message and code, and no stack at info', async () => {
    const { app, lines } = appAt('info');
    const res = await request(app).get('/boom');
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('internal_error');
    const errors = errorsOf(lines);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: 'unexpected error', err: { name: 'TypeError', message: 'cannot read x of undefined', code: 'ERR_TEST' } });
    expect(JSON.stringify(errors[0])).not.toContain('at ');
  });

  it('at debug the same line carries the stack', async () => {
    const { app, lines } = appAt('debug');
    await request(app).get('/boom');
    const [line] = errorsOf(lines);
    expect((line!.err as { stack: string }).stack).toMatch(/^TypeError: cannot read x of undefined\n\s+at /);
  });

  it('an AppError of 5xx is one error line with its code; a 4xx adds a line only at debug', async () => {
    const info = appAt('info');
    await request(info.app).get('/down');
    await request(info.app).get('/refused');
    expect(errorsOf(info.lines)).toEqual([expect.objectContaining({ level: 50, code: 'dependency_down', msg: 'serviceb is not reachable', err: expect.objectContaining({ name: 'AppError' }) })]);
    const debug = appAt('debug');
    await request(debug.app).get('/refused');
    expect(errorsOf(debug.lines)).toEqual([expect.objectContaining({ level: 20, code: 'bad_thing', status: 400, msg: 'That is not allowed' })]);
  });

  it('trace adds a line as each request arrives, with header names and never their values', async () => {
    const { app, lines } = appAt('trace');
    await request(app).get('/refused').set('Authorization', 'Bearer secret-token-value');
    const received = lines.find((l) => l.msg === 'request received');
    expect(received).toMatchObject({ level: 10, method: 'GET', path: '/refused' });
    expect(received!.headers).toContain('authorization');
    expect(JSON.stringify(lines)).not.toContain('secret-token-value');
    const quiet = appAt('debug');
    await request(quiet.app).get('/refused');
    expect(quiet.lines.find((l) => l.msg === 'request received')).toBeUndefined();
  });
});

describe('redaction', () => {
  it('censors tokens, keys, secrets and credentials at the top level, one field down and in request headers, and leaves the rest', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        cb();
      },
    });
    const logger = createLogger({ level: 'info', name: 'test' }, sink);
    const given = { token: 'tok-1', secret: 'sec-1', privateKey: 'key-1', authorization: 'Bearer tok-2' };
    const nested = { body: { token: 'tok-3', keep: 'visible' }, err: { secret: 'sec-2', message: 'm' }, client: { privateKey: 'key-2' } };
    const headers = { req: { headers: { authorization: 'Bearer tok-4', cookie: 'sid=tok-5', host: 'h' } }, headers: { authorization: 'Bearer tok-6', cookie: 'sid=tok-7' } };
    logger.info(given, 'top');
    logger.info(nested, 'nested');
    logger.info(headers, 'headers');
    logger.info({ keyIds: ['a', 'b'], status: 200 }, 'plain');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => l.msg)).toEqual(['top', 'nested', 'headers', 'plain']);
    expect(lines[0]).toMatchObject({ token: '[redacted]', secret: '[redacted]', privateKey: '[redacted]', authorization: '[redacted]' });
    expect(lines[1]).toMatchObject({ body: { token: '[redacted]', keep: 'visible' }, err: { secret: '[redacted]', message: 'm' }, client: { privateKey: '[redacted]' } });
    expect(lines[2]).toMatchObject({ req: { headers: { authorization: '[redacted]', cookie: '[redacted]', host: 'h' } }, headers: { authorization: '[redacted]', cookie: '[redacted]' } });
    expect(lines[3]).toMatchObject({ keyIds: ['a', 'b'], status: 200 });
    expect(JSON.stringify(lines)).not.toMatch(/tok-|sec-|key-\d/);
    // The caller's objects are not changed by the censoring.
    expect(nested.body.token).toBe('tok-3');
  });
});

describe('the request line writer', () => {
  /** The same fields through pino and through createLineWriter, the raw text of each line, the time masked. */
  function bothLines(level: string, fields: Record<string, unknown>, at: 'info' | 'error' = 'info') {
    const raw: string[] = [];
    const logger = createLogger({ level, name: 'jwt-factory' }, { write: (line: string) => void raw.push(line) });
    const child = logger.child({ worker: 2 });
    const write = createLineWriter(child);
    child[at](fields, 'request');
    const fromPino = raw.splice(0);
    write(at, fields as LineFields, 'request');
    const mask = (lines: string[]) => lines.map((line) => line.replace(/"time":"[^"]+"/, '"time":"T"'));
    return { fromPino: mask(fromPino), fromWriter: mask(raw) };
  }

  it.each<[string, Record<string, unknown>]>([
    ['a verification', { method: 'POST', path: '/verify/servicea', status: 200, durationMs: 1.23, keyId: 'servicea', kid: 'k1', jti: 'a-b-c' }],
    ['quotes, backslashes, controls, separators, non-ASCII', { method: 'GET', path: '/a"b\\c\u0001\u2028é𝄞', status: 404, durationMs: 0 }],
    ['booleans and an undefined field', { method: 'POST', path: '/x', status: 403, durationMs: 2, valid: false, skipped: undefined }],
    ['a number JSON cannot spell (pino writes null)', { method: 'POST', path: '/x', status: 200, durationMs: Number.NaN }],
    ['a token (pino redacts it)', { method: 'POST', path: '/x', status: 200, token: 'eyJ.secret.sig' }],
    ['a secret one field down (pino redacts it)', { method: 'POST', path: '/x', status: 200, client: { id: 'a', secret: 's3cret' } }],
    ['an Authorization value (pino redacts it)', { method: 'POST', path: '/x', status: 200, authorization: 'Basic eA==' }],
  ])('%s: the same bytes as pino', (_name, fields) => {
    const { fromPino, fromWriter } = bothLines('info', fields);
    expect(fromPino).toHaveLength(1);
    expect(fromWriter).toEqual(fromPino);
    expect(fromWriter.join('')).not.toMatch(/eyJ\.secret|s3cret|Basic eA/);
  });

  it('any flat fields of strings, numbers and booleans give the bytes pino gives (fast-check)', () => {
    const value = fc.oneof(fc.string({ unit: 'grapheme' }), fc.string(), fc.double(), fc.integer(), fc.boolean());
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !['msg', 'level', 'time'].includes(k)), value, { maxKeys: 8 }), (fields) => {
        const { fromPino, fromWriter } = bothLines('info', fields);
        expect(fromWriter).toEqual(fromPino);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the level threshold: nothing below it, error lines at error', () => {
    expect(bothLines('warn', { status: 200 })).toEqual({ fromPino: [], fromWriter: [] });
    const { fromPino, fromWriter } = bothLines('warn', { status: 503 }, 'error');
    expect(fromWriter).toEqual(fromPino);
    expect(JSON.parse(fromWriter[0]!)).toMatchObject({ level: 50, worker: 2, status: 503, msg: 'request' });
  });
});
