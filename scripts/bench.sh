#!/usr/bin/env bash
# `make bench`: every benchmark of bench/, each replacing its section of bench/RESULTS.md with
# the machine, load and commit it ran on. Installs what is missing first (like `make test`).
# Long: about an hour on 2 cores. BENCH_ONLY="clone load" runs a subset.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
bash scripts/tools.sh >/dev/null
export PUSHGATE_TOOLS_BIN="${PUSHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pushgate}/bin"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  echo "bench.sh: uncommitted changes: RESULTS.md records committed code only; commit first" >&2
  exit 2
fi
all="gate_full gate_incremental scale clone load rss reconcile live_check render"
for b in ${BENCH_ONLY:-$all}; do
  printf '\n== bench.%s\n' "$b"
  case "$b" in
    gate_incremental|clone|reconcile) .venv/bin/python -m "bench.$b" --profile;;
    live_check) .venv/bin/python -m bench.live_check --size 1000 --repeats 3 --pushes 10;;
    *) .venv/bin/python -m "bench.$b";;
  esac
done
