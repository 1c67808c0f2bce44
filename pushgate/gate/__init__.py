"""The gate: builds the objects of a tree and checks them (schemas, policies).

Shared by the git server, `pushgate validate` and the reconciler's object building; no web or
cluster code.
"""
