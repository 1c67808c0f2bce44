#!/usr/bin/env bash
# The README's test command (`make test`): installs what is missing (venv, pinned tools), then runs
# lint, types, import contracts, the Rego unit tests, the whole pytest suite and the toy benchmarks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "python environment"; bash scripts/setup.sh
step "pinned tools"; bash scripts/tools.sh
step "browser (status page test)"; bash scripts/browser.sh >/dev/null
export PUSHGATE_TOOLS_BIN="${PUSHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pushgate}/bin"
step "ruff"; .venv/bin/ruff check .
step "mypy --strict"; .venv/bin/mypy
step "import contracts"; .venv/bin/lint-imports
step "rego unit tests (opa test)"; "$(bash scripts/tools.sh path opa)" test policies/ -v | tail -n 3
step "pytest"; .venv/bin/python -m pytest "$@"
