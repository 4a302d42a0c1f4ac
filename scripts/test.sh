#!/usr/bin/env bash
# Sets everything up (including PostgreSQL + PostGIS, Mosquitto and Java) and runs the
# CityOS test suite. Extra arguments go to pytest. `--all` also runs the slow suites.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --services

args=()
marks="not slow"
for a in "$@"; do
  if [ "$a" = "--all" ]; then marks=""; else args+=("$a"); fi
done
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
export CITYOS_SHARED_DATA="${CITYOS_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
if [ -n "$marks" ]; then
  exec .venv/bin/python -m pytest -m "$marks" -n 2 --dist loadgroup "${args[@]}"
else
  exec .venv/bin/python -m pytest -n 2 --dist loadgroup "${args[@]}"
fi
