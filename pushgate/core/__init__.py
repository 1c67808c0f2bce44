"""The pure core: parsing, checking and reporting that does no I/O.

Imported by `pushgate.gate`, `gitserver` and `reconciler`; imports none of them, nor flask,
dulwich, kubernetes or anything that opens a socket or a process (import-linter enforces it).
"""
