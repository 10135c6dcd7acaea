import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, isAppError } from './errors.js';
import type { Logger } from './logger.js';

/** Body of every error answer: `{ error: { code, message, ...details } }`. */
export interface ErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

/**
 * Translates body-parser failures (express.json / express.text) into AppErrors so that the
 * error middleware handles one type. body-parser sets `type` on its errors.
 */
function fromParserError(err: { type?: string; status?: number; limit?: number }): AppError | undefined {
  switch (err.type) {
    case 'entity.parse.failed':
      return new AppError('malformed_json', 400, 'The request body is not valid JSON');
    case 'entity.too.large':
      return new AppError('body_too_large', 413, `The request body is larger than the limit of ${err.limit} bytes`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError('unsupported_encoding', 415, 'The request body encoding is not supported');
    case 'request.aborted':
      return new AppError('request_aborted', 400, 'The request was aborted');
    default:
      return undefined;
  }
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
    const appError = isAppError(err) ? err : fromParserError(err ?? {});
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
