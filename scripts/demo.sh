#!/usr/bin/env bash
# Sets up CityOS and runs the demo city: builds a synthetic city (roads, districts, POIs,
# vehicles over several days), loads real Beijing air-quality and NYC 311 samples when
# ../shared/data is present, and prints a tour of queries with timings.
# Extra arguments go to `cityos demo` (see `cityos demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CITYOS_SHARED_DATA="${CITYOS_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/cityos demo "$@"
