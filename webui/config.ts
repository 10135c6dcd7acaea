import { z } from 'zod';
import { parseEnv, setting, type Env } from '../lib/config.js';

/** The webui's settings (environment variables), parsed once by main. */
export const WEBUI_SETTINGS = z.object({
  // 3003: the next port after the services' 3000-3002.
  PORT: setting.port(3003),
  // Loopback: without the gateway in front, nothing should reach it (the cluster sets 0.0.0.0).
  HOST: z.string().default('127.0.0.1'),
  SERVICEB_URL: setting.url('http://localhost:3001') as z.ZodDefault<z.ZodString>,
  SERVICEC_URL: setting.url('http://localhost:3002') as z.ZodDefault<z.ZodString>,
  UPSTREAM_TIMEOUT_MS: setting.integer(3000, 50, 120_000),
  LOG_LEVEL: setting.logLevel(),
});

export type WebuiConfig = Readonly<z.infer<typeof WEBUI_SETTINGS>>;

/** Parses the webui's environment; throws a ConfigError naming the variable. */
export const loadWebuiConfig = (env: Env): WebuiConfig => parseEnv(WEBUI_SETTINGS, env);
