import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, startProcess, type Started } from './process.js';

/**
 * A real factory process with OIDC_CONFIG on a free loopback port, its keys and config in a
 * temporary folder. `oidcYaml` writes the clients and users for the port the factory will get
 * (redirect URIs are matched exactly, so they name it).
 */
export interface OidcFactory {
  process: Started;
  port: number;
  /** http://127.0.0.1:<port>, the default PUBLIC_URL. */
  base: string;
  /** The temporary folder: keys, oidc.yaml, and whatever the test writes beside them. */
  dir: string;
  stop(): Promise<void>;
}

export async function startOidcFactory(oidcYaml: (port: number) => string, env: (base: string) => Record<string, string> = () => ({})): Promise<OidcFactory> {
  const dir = await mkdtemp(path.join(tmpdir(), 'oidc-factory-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  await writeFile(path.join(dir, 'oidc.yaml'), oidcYaml(port));
  const started = await startProcess('jwt-factory/main.ts', { env: { PORT: String(port), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), ...env(base) }, timeoutMs: 60_000 });
  return {
    process: started,
    port,
    base,
    dir,
    async stop() {
      await started.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
