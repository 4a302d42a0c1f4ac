#!/usr/bin/env bash
# Sets everything up (including PostgreSQL + PostGIS, Mosquitto, Java and the browser) and runs
# the CityOS test suites one after the other:
#   1. the default suite (everything not marked slow or browser) on 2 workers, < 10 min;
#   2. the slow suite (long durability and scale tests);
#   3. the browser suite (headless Chromium), when the dashboard's tests exist.
# `--fast` runs only the default suite. Any other arguments go to one pytest run instead
# (e.g. `./scripts/test.sh tests/store -k knn`). Under CI=true a test that skips fails
# (tests/conftest.py), so no suite can be skipped silently; an empty suite fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --services

fast=0
args=()
for a in "$@"; do
  case "$a" in
    --fast) fast=1 ;;
    --all) ;;  # kept for compatibility: every suite runs by default
    *) args+=("$a") ;;
  esac
done
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
export CITYOS_SHARED_DATA="${CITYOS_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
py=.venv/bin/python

if [ ${#args[@]} -gt 0 ]; then
  exec "$py" -m pytest -n 2 --dist loadgroup "${args[@]}"
fi

suite() {  # suite NAME PYTEST-ARGS...: run one suite; an empty suite (exit 5) is a failure
  local name=$1; shift
  printf '\033[1m[test]\033[0m %s suite\n' "$name"
  local t0=$SECONDS rc=0
  "$py" -m pytest "$@" || rc=$?
  printf '\033[1m[test]\033[0m %s suite: exit %s in %s s\n' "$name" "$rc" "$((SECONDS - t0))"
  if [ "$rc" = 5 ]; then echo "[test] the $name suite ran no test" >&2; fi
  return "$rc"
}

suite default -m "not slow and not browser" -n 2 --dist loadgroup
[ "$fast" = 1 ] && exit 0
suite slow -m "slow and not browser" -n 2 --dist loadgroup
if compgen -G "tests/twin/test_*browser*.py" >/dev/null || grep -rqs "mark.browser" tests; then
  suite browser -m browser -n 1
fi
