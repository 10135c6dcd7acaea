/**
 * The browser the suite drives, for the tests and for `npm run demo`: Debian's chromium through
 * playwright-core (never a downloaded build). Installed by `bash scripts/install-tools.sh`.
 */

/** Debian's chromium: the only browser the suite drives. */
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
