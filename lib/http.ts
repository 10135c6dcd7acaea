import express, { type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
import { AppError, isAppError } from './errors.js';
import type { Logger } from './logger.js';

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

/** Throws 400 `json_too_deep` when a JSON text nests deeper than MAX_JSON_DEPTH (one pass over the bytes, strings skipped). */
export function assertJsonDepth(body: Buffer): void {
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

/** express.json with the suite's limits: `limit` bytes and MAX_JSON_DEPTH levels, checked before parsing. */
export function jsonBodyParser(limit: string | number): RequestHandler {
  // body-parser calls verify with the decoded bytes before JSON.parse and passes what it throws to next().
  return express.json({ limit, verify: (_req, _res, body) => assertJsonDepth(body) });
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
      logger.error({ err: { message: String(err?.message ?? err) }, path: req.path }, 'error after headers were sent');
      res.end();
      return;
    }
    if (appError) {
      if (appError.status >= 500) logger.error({ code: appError.code, path: req.path }, appError.message);
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
    // Log the name and message only: a stack may carry request data, never send it out.
    logger.error({ err: { name: err?.name, message: err?.message, stack: err?.stack }, path: req.path }, 'unexpected error');
    res.status(500).json({ error: { code: 'internal_error', message: 'Internal error' } });
  };
}

/**
 * One JSON log line per request: method, path (no query string, which may carry a token),
 * status, duration. Handlers add `res.locals.log` fields such as keyId, kid, jti.
 */
export function requestLogger(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      const fields = { method: req.method, path: req.path, status: res.statusCode, durationMs: Math.round(durationMs * 100) / 100, ...(res.locals.log ?? {}) };
      if (res.statusCode >= 500) logger.error(fields, 'request');
      else logger.info(fields, 'request');
    });
    next();
  };
}
