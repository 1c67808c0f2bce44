#!/usr/bin/env bash
# Creates .venv at the repo root with pushgate and its pinned Python dependencies.
# Idempotent: does nothing when pyproject.toml, constraints.txt and the C extensions' sources are
# unchanged since the last run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || { echo "setup.sh: Python 3.11 is required ('$py' not found; set PYTHON=...)" >&2; exit 1; }
stamp=.venv/.pushgate-setup
# The bytecode of pushgate's own modules, as a regular `pip install` compiles it: an editable
# install has none, and where PYTHONDONTWRITEBYTECODE is set (this kind of machine, the container
# image) every command and every policy worker compiled them from source again (~0.15 s of CPU
# for one `pushgate validate`). Only what changed is compiled again; stale files are ignored.
compile() { .venv/bin/python -m compileall -q pushgate gitserver reconciler >/dev/null; }
# the C extensions are built by the install: a change to their source installs again
want=$(cat pyproject.toml constraints.txt pushgate/gate/_regoinput.c pushgate/core/_yamlplain.c | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/pushgate ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  compile
  exit 0
fi
echo "setup.sh: installing the Python environment into .venv" >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
echo "$want" > "$stamp"
compile
