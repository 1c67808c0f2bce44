#!/usr/bin/env bash
# The README's run command (`make run`): installs what is missing, starts a local control plane
# (etcd + kube-apiserver + kube-controller-manager + a kubelet stand-in) and `pushgate serve`
# with the embedded policy engine and the reconciler attached, then prints how to use it.
# Ctrl-C stops everything. PUSHGATE_RUN_PORT picks the git port (default 8080).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/tools.sh >/dev/null
exec .venv/bin/python -m scripts.localrun "$@"
