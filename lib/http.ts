import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { AppError, isAppError } from './errors.js';
import { createLineWriter, errorFields, type Logger } from './logger.js';

/** Body of every error answer: `{ error: { code, message, ...details } }`. */
export interface ErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

/**
 * The deepest JSON a body may nest. JSON.parse copes with any depth, but every recursive walk
 * after it (zod, JSON.stringify while signing, structuredClone) overflows the stack somewhere
 * past ten thousand levels. Claims and Istio objects nest a few levels; 64 leaves room.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Throws 400 `json_too_deep` when a JSON text nests deeper than MAX_JSON_DEPTH (one pass over the
 * bytes, strings skipped). A text with at most MAX_JSON_DEPTH opening brackets, counted anywhere
 * (strings too), cannot nest deeper: such a text, every body of a service call, skips the pass.
 */
export function assertJsonDepth(body: Buffer): void {
  if (openersAtMost(body, MAX_JSON_DEPTH)) return;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i += 1) {
    const c = body[i];
    if (inString) {
      if (c === 0x5c) i += 1; // a backslash escapes the next byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > MAX_JSON_DEPTH) throw new AppError('json_too_deep', 400, `The JSON body nests deeper than ${MAX_JSON_DEPTH} levels`, { details: { maxDepth: MAX_JSON_DEPTH } });
    } else if (c === 0x5d || c === 0x7d) {
      depth -= 1;
    }
  }
}

/** True when `body` holds at most `limit` bytes `{` and `[` together (Buffer#indexOf: native, no per-byte loop). */
function openersAtMost(body: Buffer, limit: number): boolean {
  let count = 0;
  for (const opener of [0x7b, 0x5b]) {
    for (let at = body.indexOf(opener); at !== -1; at = body.indexOf(opener, at + 1)) {
      count += 1;
      if (count > limit) return false;
    }
  }
  return true;
}

/** A size setting (`100kb`, `1mb`, `512`) in bytes, as body-parser's `bytes` reads it: k and m are 1024 and 1024². */
export function byteSize(limit: string | number): number {
  if (typeof limit === 'number') return limit;
  const match = /^(\d+)\s*(b|kb|mb)?$/i.exec(limit.trim());
  if (!match) throw new Error(`not a size: ${limit}`);
  const unit = (match[2] ?? 'b').toLowerCase();
  return Number(match[1]) * (unit === 'mb' ? 1024 * 1024 : unit === 'kb' ? 1024 : 1);
}

/** The one request shape the lean reader takes: JSON in UTF-8 (the charset may be named). */
const PLAIN_JSON = /^application\/json[\t ]*(?:;[\t ]*charset[\t ]*=[\t ]*(?:utf-8|"utf-8")[\t ]*)?$/i;

/** An error shaped like body-parser's, so fromParserError answers it the same way whichever reader met it. */
const parserError = (type: string, message: string) => Object.assign(new Error(message), { type, status: 400 });

/**
 * What body-parser's strict JSON parser makes of a complete body: `{}` when empty, a UTF-8 BOM
 * skipped, only an object or an array at the top, MAX_JSON_DEPTH levels at most.
 */
function parseJsonBody(chunks: Buffer[], received: number): { value: unknown } | { error: unknown } {
  let body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
  if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3);
  if (body.length === 0) return { value: {} };
  try {
    assertJsonDepth(body);
  } catch (error) {
    return { error };
  }
  const text = body.toString('utf8');
  const first = /^[\x20\x09\x0a\x0d]*(.)/s.exec(text)?.[1];
  if (first !== '{' && first !== '[') return { error: parserError('entity.parse.failed', 'the JSON body is not an object or an array') };
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: parserError('entity.parse.failed', (err as Error).message) };
  }
}

/**
 * express.json with the suite's limits: `limit` bytes and MAX_JSON_DEPTH levels, checked before parsing.
 *
 * The bodies every service-to-service call sends (`Content-Type: application/json`, a
 * Content-Length within the limit, no Content-Encoding) are read here in one pass with
 * body-parser's answers (parseJsonBody); everything else (a charset or a compression to
 * handle, a chunked body, a body over the limit, other media types) goes to body-parser itself,
 * so each of those keeps one implementation and its answers. Measured on POST /verify
 * (README "Performance"): body-parser's stack was the largest part of the route after the
 * signature and the log line.
 */
export function jsonBodyParser(limit: string | number): RequestHandler {
  // body-parser calls verify with the decoded bytes before JSON.parse and passes what it throws to next().
  const general = express.json({ limit, verify: (_req, _res, body) => assertJsonDepth(body) });
  const maxBytes = byteSize(limit);
  return (req, res, next) => {
    const { headers } = req;
    const type = headers['content-type'];
    const length = Number(headers['content-length'] ?? NaN);
    if (
      type === undefined || !(length <= maxBytes) || headers['content-encoding'] !== undefined ||
      headers['transfer-encoding'] !== undefined || req.complete || (type !== 'application/json' && !PLAIN_JSON.test(type))
    ) {
      general(req, res, next);
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    req.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      // node's parser ends a body at its Content-Length: a shorter one was cut off.
      if (received !== length) return next(parserError('request.size.invalid', 'request size did not match content length'));
      const parsed = parseJsonBody(chunks, received);
      if ('error' in parsed) return next(parsed.error);
      req.body = parsed.value;
      next();
    });
    // An aborted request: node emits 'error' (ECONNRESET) when someone listens.
    req.on('error', () => {
      if (settled) return;
      settled = true;
      next(parserError('request.aborted', 'request aborted'));
    });
  };
}

/** zlib's error codes: a body whose Content-Encoding says gzip, deflate or br but whose bytes are not. */
const ZLIB_CODES = new Set(['Z_DATA_ERROR', 'Z_BUF_ERROR', 'Z_STREAM_ERROR', 'Z_NEED_DICT', 'ERR_BROTLI_DECOMPRESSION_FAILED', 'ERR__ERROR_FORMAT_PADDING_1']);

/**
 * Translates the failures of express's own layers into AppErrors so that the error middleware
 * handles one type: body-parser (json, urlencoded, text, raw: it sets `type` on its errors,
 * see expressjs/body-parser lib/read.js), zlib under it, and the router's percent-decoding of
 * path parameters (a URIError with status 400, see pillarjs/router decodeParam). Any other
 * error that carries a 4xx status from http-errors keeps its status with a generic code.
 */
function fromParserError(err: { type?: string; status?: number; statusCode?: number; limit?: number; code?: string; name?: string }, req: Request): AppError | undefined {
  switch (err.type) {
    case 'entity.parse.failed':
    case 'querystring.parse.rangeError':
      return req.is('application/x-www-form-urlencoded')
        ? new AppError('malformed_form', 400, 'The request body is not a valid form (application/x-www-form-urlencoded)')
        : new AppError('malformed_json', 400, 'The request body is not valid JSON');
    case 'entity.too.large':
      return new AppError('body_too_large', 413, `The request body is larger than the limit of ${err.limit} bytes`);
    case 'parameters.too.many':
      return new AppError('body_too_large', 413, 'The form has too many parameters');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError('unsupported_encoding', 415, 'The request body encoding is not supported');
    case 'request.aborted':
      return new AppError('request_aborted', 400, 'The request was aborted');
    case 'request.size.invalid':
      return new AppError('malformed_body', 400, 'The request body is not as long as its Content-Length says');
    default:
      break;
  }
  if (err.code !== undefined && ZLIB_CODES.has(err.code)) {
    return new AppError('malformed_body_encoding', 400, 'The request body is not encoded as its Content-Encoding says');
  }
  const status = err.status ?? err.statusCode;
  if (err.name === 'URIError' && status === 400) return new AppError('invalid_path', 400, 'The path has a malformed percent-encoding');
  if (typeof status === 'number' && status >= 400 && status < 500) return new AppError('bad_request', status, 'The request is malformed');
  return undefined;
}

/**
 * An answer written straight to node's response, without express's `res.send` (its Content-Type
 * rewriting, its ETag hash of every body, its freshness check): for the POST answers a mesh asks
 * for on every call, which no cache keeps. Headers set before (by middleware) are kept.
 */
export function sendBody(res: Response, status: number, contentType: 'application/json' | 'text/plain', body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', `${contentType}; charset=utf-8`);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** sendBody with a JSON value. */
export const sendJson = (res: Response, status: number, value: unknown): void => sendBody(res, status, 'application/json', JSON.stringify(value));

/** 404 JSON answer for any route nobody serves. */
export const notFoundHandler: RequestHandler = (req, res) => {
  res.status(404).json({ error: { code: 'route_not_found', message: `No route for ${req.method} ${req.path}` } });
};

/**
 * The one place that turns errors into HTTP. AppErrors answer with their status and code;
 * anything unexpected is logged and answers a generic 500 with no internals.
 */
export function errorMiddleware(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const appError = isAppError(err) ? err : fromParserError(err ?? {}, req);
    if (res.headersSent) {
      logger.error({ err: errorFields(logger, err), path: req.path }, 'error after headers were sent');
      res.end();
      return;
    }
    if (appError) {
      if (appError.status >= 500) logger.error({ err: errorFields(logger, appError), code: appError.code, path: req.path }, appError.message);
      // A refused request is the client's mistake: a line at debug says which, for whoever is looking.
      else logger.debug({ code: appError.code, status: appError.status, path: req.path }, appError.message);
      const body: ErrorBody = {
        error: {
          code: appError.code,
          message: appError.expose ? appError.message : 'Internal error',
          ...(appError.expose ? appError.details : undefined),
        },
      };
      if (appError.headers) res.set(appError.headers);
      res.status(appError.status).json(body);
      return;
    }
    // One line with name, message and code (the stack at debug only); nothing of it goes out.
    logger.error({ err: errorFields(logger, err), path: req.path }, 'unexpected error');
    res.status(500).json({ error: { code: 'internal_error', message: 'Internal error' } });
  };
}

/**
 * One JSON log line per request: method, path (no query string, which may carry a token),
 * status, duration. Handlers add `res.locals.log` fields such as keyId, kid, jti.
 */
export function requestLogger(logger: Logger): RequestHandler {
  const write = createLineWriter(logger);
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    // At trace, a line as the request arrives (header names only: values may carry tokens or cookies).
    if (logger.isLevelEnabled('trace')) logger.trace({ method: req.method, path: req.path, headers: Object.keys(req.headers) }, 'request received');
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      const fields = { method: req.method, path: req.path, status: res.statusCode, durationMs: Math.round(durationMs * 100) / 100, ...(res.locals.log ?? {}) };
      write(res.statusCode >= 500 ? 'error' : 'info', fields, 'request');
    });
    next();
  };
}
