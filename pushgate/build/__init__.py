"""The build: a source tree -> the Kubernetes objects pushgate checks and applies.

One step shared by the gate, the reconciler, `pushgate validate` and `pushgate render`, with one
configuration type (`config.BuildConfig`), so what the gate checked is what gets applied.
"""
