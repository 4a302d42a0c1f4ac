#!/usr/bin/env bash
# Sets up CityOS on a fresh machine with Python 3.11: a virtual environment in .venv with
# the dependency tree locked in requirements.lock (with hashes), then the package itself. With --services it also installs (Debian packages, as root)
# what the full test suite needs: PostgreSQL + PostGIS, Mosquitto, and Java for Spark.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
for a in "$@"; do
  case "$a" in
    --services) want_services=1 ;;
    *) echo "usage: scripts/setup.sh [--services]" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ "$want_services" = 1 ]; then
  missing=()
  [ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
  [ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
  # the dashboard's browser tests: Debian's Chromium (never a downloaded browser), a CJK font
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -d /usr/share/fonts/truetype/wqy ] || missing+=(fonts-wqy-microhei)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "[setup] need root to install: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the Debian packages start their own services; tests start private ones on free ports
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "[setup] Python 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.cityos-installed-$(cat pyproject.toml requirements.lock requirements-nodeps.lock | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing the locked dependencies (requirements.lock) into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # exactly the tree CI tested, every file checked against its hash (scripts/lock.sh updates it)
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  # the AI engine's deep models: PyTorch's CPU build, pinned (any other version or range
  # pulls a multi-GB CUDA build); not in the hashed lock for that reason
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # Flower for horizontal federation, hashed, without its pins (see requirements-nodeps.lock)
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-nodeps.lock
  rm -f .venv/.cityos-installed-*
  touch "$stamp"
fi
# the dashboard ships built inside the package (src/cityos/twin/static); rebuild it when
# web/'s sources changed and Node is here (a user without Node keeps the committed build)
want=$(bash scripts/web-hash.sh 2>/dev/null || true)
have=$(cat src/cityos/twin/static/SOURCE_HASH 2>/dev/null || true)
if [ -n "$want" ] && [ "$want" != "$have" ]; then
  if command -v npm >/dev/null 2>&1; then
    log "web/ changed: rebuilding the dashboard (npm ci && npm run build)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) >/dev/null
  else
    log "web/ changed but Node is not installed: keeping the committed dashboard build"
  fi
fi
log "ready: .venv/bin/cityos"
