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
  /** The generation itself (tests pass a slow or counting one). */
  generate?: (alg: Algorithm) => Promise<KeyObject>;
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
        if (waiting.length >= options.maxQueued) {
          const seconds = Math.max(1, Math.ceil(((waiting.length + running) * averageMs) / options.concurrency / 1000));
          throw new AppError(
            'key_generation_busy',
            503,
            `The factory is generating ${running + waiting.length} keys already (KEYGEN_QUEUE ${options.maxQueued}): nothing was created. Retry in ${seconds} s.`,
            { expose: true, headers: { 'Retry-After': String(seconds) }, details: { retryAfter: seconds } },
          );
        }
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        running += 1;
      }
      const started = performance.now();
      try {
        return await generate(alg);
      } finally {
        averageMs = averageMs * 0.8 + (performance.now() - started) * 0.2;
        release();
      }
    },
    load: () => ({ running, queued: waiting.length }),
  };
}
