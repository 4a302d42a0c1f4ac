#!/usr/bin/env bash
# Re-resolves the whole dependency tree of CityOS (all extras except the AI stack's torch,
# plus dev) into requirements.lock with hashes. Run it deliberately, when pyproject.toml's
# ranges change or to take upgrades; review the diff and commit it with the change.
# scripts/setup.sh installs exactly this file (then CityOS itself with --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
[ -x "$UV" ] || { echo "[lock] needs uv: pip install uv" >&2; exit 1; }
"$UV" pip compile pyproject.toml --extra all --extra dev \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --generate-hashes --no-header --annotation-style line \
  --output-file requirements.lock "$@"
# torch must never come from the base lock (a CUDA build would follow); it is pinned
# ==2.13.0 in the AI layer's extra and installed from the CPU index there.
if grep -qi '^torch==' requirements.lock; then
  echo "[lock] torch entered the base lock; pin it ==2.13.0 in an extra instead" >&2
  exit 1
fi
echo "[lock] requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages"
