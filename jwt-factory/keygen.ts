import type { KeyObject } from 'node:crypto';
import { AppError } from '../lib/errors.js';
import type { Algorithm } from './config.js';
import { generateSigningKey } from './keys.js';

/**
 * Key generation kept off the signing path. Node runs generateKeyPair and WebCrypto signing
 * (jose) in the same libuv thread pool (4 threads by default, UV_THREADPOOL_SIZE): a burst of
 * RSA key creations fills every thread and issuance for existing keys waits behind them. This
 * queue lets at most `concurrency` generations run at once, so the rest of the pool stays free
 * for signing and verification, and refuses new work once `maxQueued` are waiting instead of
 * queueing without bound. Any key store backend takes it as its `generateKey`.
 */

export interface KeyGeneratorOptions {
  /** Generations running at once (each holds one thread-pool thread). */
  concurrency: number;
  /** Generations waiting beyond those; one more answers 503 key_generation_busy. */
  maxQueued: number;
  /**
   * The longest a new request may expect to wait for its turn (from recent generation times);
   * past it, 503 at once. Generation slows down under load (RSA 2048 took 2.4 s per key on a
   * busy two-core machine), so a count alone would let a caller wait a minute. Default: no bound.
   */
  maxWaitMs?: number;
  /** The generation itself (tests pass a slow or counting one). */
  generate?: (alg: Algorithm) => Promise<KeyObject>;
  /** A monotonic clock in ms that times generations (tests move it by hand). Default performance.now. */
  nowMs?: () => number;
}

/** The bounded generator a key store calls instead of generateSigningKey. */
export interface KeyGenerator {
  /** Generates a key, waiting its turn; rejects at once with 503 `key_generation_busy` when the queue is full. */
  generate(alg: Algorithm): Promise<KeyObject>;
  /** Generations running and waiting (for logs and tests). */
  load(): { running: number; queued: number };
}

/** Creates a bounded key generator (no module state: one per key store). */
export function createKeyGenerator(options: KeyGeneratorOptions): KeyGenerator {
  const generate = options.generate ?? generateSigningKey;
  const nowMs = options.nowMs ?? (() => performance.now());
  const waiting: Array<() => void> = [];
  let running = 0;
  // A moving average of one generation's time: what Retry-After tells a refused caller.
  let averageMs = 100;

  const release = () => {
    running -= 1;
    const next = waiting.shift();
    if (next) {
      running += 1;
      next();
    }
  };

  return {
    async generate(alg) {
      if (running >= options.concurrency) {
        const expectedWaitMs = ((waiting.length + running) * averageMs) / options.concurrency;
        if (waiting.length >= options.maxQueued || expectedWaitMs > (options.maxWaitMs ?? Number.POSITIVE_INFINITY)) {
          const seconds = Math.max(1, Math.ceil(expectedWaitMs / 1000));
          throw new AppError(
            'key_generation_busy',
            503,
            `The factory is generating ${running + waiting.length} keys already (KEYGEN_QUEUE ${options.maxQueued}, KEYGEN_MAX_WAIT_MS ${options.maxWaitMs ?? 'none'}): nothing was created. Retry in ${seconds} s.`,
            { expose: true, headers: { 'Retry-After': String(seconds) }, details: { retryAfter: seconds } },
          );
        }
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        running += 1;
      }
      const started = nowMs();
      try {
        return await generate(alg);
      } finally {
        averageMs = averageMs * 0.8 + (nowMs() - started) * 0.2;
        release();
      }
    },
    load: () => ({ running, queued: waiting.length }),
  };
}
