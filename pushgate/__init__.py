"""pushgate: a policy-gated Git server that is a Kubernetes cluster's only write path.

Packages: `pushgate.core` (pure: manifests, violations, reports), `pushgate.gate` (the gate both
the git server and `pushgate validate` run), `gitserver` (smart HTTP, auth, quarantined receive)
and `reconciler` (server-side apply, prune, drift, health). `pushgate.cli` wires them together.
"""
