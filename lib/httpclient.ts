import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance, isAxiosError } from 'axios';
import type { z } from 'zod';
import { AppError } from './errors.js';

/**
 * Outbound HTTP for service-to-service calls: keep-alive agents, an HTTPS agent that trusts
 * exactly the suite's CA (verification is never switched off), a bounded total time, and one
 * mapping of every failure onto an answer that names the dependency:
 *   502 dependency_bad_answer / dependency_untrusted, 503 dependency_down, 504 dependency_timeout.
 */

export interface HttpClientOptions {
  /** PEM of the CA(s) that sign our peers' server certificates. Replaces the public roots. */
  ca?: string | Buffer;
  /** Total time allowed for one call, connect to last byte. */
  timeoutMs: number;
  /** Largest answer accepted, so a misbehaving peer cannot fill memory. */
  maxBytes?: number;
}

/** A dependency's raw answer: status, headers and the body as text. */
export interface Answer {
  status: number;
  contentType: string;
  text: string;
}

export interface RequestSpec {
  /** Names the dependency in error answers and logs (`jwt-factory`, `serviceb`, ...). */
  dependency: string;
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  /** JSON-serializable body for POST. */
  body?: unknown;
  /**
   * Whether sending the request twice means the same as once, so a reset on a reused
   * keep-alive socket may be retried. Default: true for GET, false for POST (RFC 9110 §9.2.2);
   * a POST whose meaning is idempotent (a verification, a token mint) says so here.
   */
  idempotent?: boolean;
}

export interface HttpClient {
  /** Sends one request; resolves with any HTTP answer, rejects only with a dependency AppError. */
  request(spec: RequestSpec): Promise<Answer>;
  /** Closes idle keep-alive sockets (at shutdown). */
  close(): void;
}

/** Error codes of TLS verification failures: the peer is reachable but not trusted. */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);
const DOWN_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

/** The dependency error every caller throws: `{ error: { code, message, dependency } }`. */
export function dependencyError(dependency: string, kind: 'bad_answer' | 'untrusted' | 'down' | 'timeout', message: string, cause?: unknown): AppError {
  const status = kind === 'down' ? 503 : kind === 'timeout' ? 504 : 502;
  // expose: the message names the dependency and what went wrong, never a token or key.
  return new AppError(`dependency_${kind}`, status, message, { expose: true, details: { dependency }, cause });
}

/** Maps a transport failure of axios onto a dependency error. */
function classify(dependency: string, url: string, err: unknown, timeoutMs: number): AppError {
  const code = (isAxiosError(err) ? (err.code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code) : (err as NodeJS.ErrnoException)?.code) ?? '';
  const where = new URL(url).origin;
  if (code === 'ERR_CANCELED' || code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
    return dependencyError(dependency, 'timeout', `${dependency} at ${where} did not answer within ${timeoutMs} ms`, err);
  }
  if (TLS_CODES.has(code)) {
    return dependencyError(dependency, 'untrusted', `${dependency} at ${where} presented a certificate the suite's CA does not vouch for (${code})`, err);
  }
  if (DOWN_CODES.has(code)) {
    return dependencyError(dependency, 'down', `${dependency} at ${where} is not reachable (${code})`, err);
  }
  // HPE_*: Node's HTTP parser met bytes that are not an HTTP answer (llhttp's error codes).
  if (code === 'ERR_FR_MAX_BODY_LENGTH_EXCEEDED' || code === 'ERR_BAD_RESPONSE' || code.startsWith('HPE_')) {
    return dependencyError(dependency, 'bad_answer', `${dependency} at ${where} sent an answer that is too large or malformed`, err);
  }
  return dependencyError(dependency, 'down', `${dependency} at ${where} failed (${code || 'unknown error'})`, err);
}

/** True when a request failed with ECONNRESET or EPIPE on a socket the agent had kept alive from an earlier request. */
function resetOnReusedSocket(err: unknown): boolean {
  if (!isAxiosError(err)) return false;
  const code = err.code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code;
  const request = err.request as { reusedSocket?: boolean } | undefined;
  return (code === 'ECONNRESET' || code === 'EPIPE') && request?.reusedSocket === true;
}

/** Creates the outbound client with its own keep-alive agents (one per service instance). */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 64, ...(options.ca === undefined ? {} : { ca: options.ca }) });
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const instance: AxiosInstance = axios.create({
    httpAgent,
    httpsAgent,
    maxRedirects: 0,
    maxContentLength: maxBytes,
    maxBodyLength: maxBytes,
    proxy: false,
    responseType: 'text',
    // Keep the raw text: each caller validates the shape it expects.
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
  });
  return {
    async request(spec) {
      // A total bound (connect + headers + body, the retry included); axios' own `timeout` only covers idleness.
      const signal = AbortSignal.timeout(options.timeoutMs);
      const send = () =>
        instance.request<string>({ method: spec.method, url: spec.url, headers: { accept: 'application/json', ...spec.headers }, data: spec.body, signal });
      try {
        let res;
        try {
          res = await send();
        } catch (err) {
          if (!(spec.idempotent ?? spec.method === 'GET') || !resetOnReusedSocket(err)) throw err;
          // The peer closed an idle keep-alive socket as we wrote to it: the request never reached
          // it. Node's agent hands out a fresh socket now; one retry, as Node's docs advise
          // (http.ClientRequest reusedSocket) and browsers do.
          res = await send();
        }
        return { status: res.status, contentType: String(res.headers['content-type'] ?? ''), text: typeof res.data === 'string' ? res.data : '' };
      } catch (err) {
        throw classify(spec.dependency, spec.url, err, options.timeoutMs);
      }
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** Parses a JSON answer against a schema, or throws 502 dependency_bad_answer naming the dependency. */
export function parseAnswer<S extends z.ZodType>(dependency: string, answer: Answer, schema: S): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(answer.text);
  } catch {
    throw dependencyError(dependency, 'bad_answer', `${dependency} answered ${answer.status} with a body that is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw dependencyError(dependency, 'bad_answer', `${dependency} answered ${answer.status} with an unexpected JSON shape`);
  }
  return parsed.data;
}
