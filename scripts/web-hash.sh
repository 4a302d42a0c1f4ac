#!/usr/bin/env bash
# Prints the hash of the dashboard's sources (web/ without node_modules): the build writes it
# to src/cityos/twin/static/SOURCE_HASH, and scripts/setup.sh rebuilds when they differ.
set -euo pipefail
cd "$(dirname "$0")/../web"
git ls-files -co --exclude-standard -- . ':!node_modules' 2>/dev/null | LC_ALL=C sort | while read -r f; do
  [ -f "$f" ] && printf '%s %s\n' "$f" "$(sha1sum < "$f" | cut -c1-40)"
done | sha1sum | cut -c1-16
