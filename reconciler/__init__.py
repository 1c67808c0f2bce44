"""The reconciler: drives the cluster to the deploy branch's head with server-side apply, prunes,
corrects drift and assesses health. Never imports `gitserver` (import-linter enforces it)."""
