"""Which files of a policy directory are policy modules.

Called by `pushgate.gate.policies` (loading a policy set) and by `pushgate.gate.prestart` (which
sends a directory's modules to the compiler before the command that needs their plan has
imported the gate): both must take the very same files, in the same order, or the plan compiled
ahead would not be the one asked for. Imports only the standard library, like prestart.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# What a file holding Gatekeeper templates or constraints contains (their API groups end so);
# a file without it is not read as one.
GATEKEEPER_MARK = b"gatekeeper.sh"


def paths(directory: str) -> list[tuple[str, str]]:
    """(path relative to `directory`, full path) of every `*.rego` under it but `*_test.rego`,
    in a fixed order."""
    return _walk(directory, lambda name: name.endswith(".rego") and not name.endswith("_test.rego"))


def documents(directory: str) -> list[tuple[str, str]]:
    """(path relative to `directory`, full path) of every YAML or JSON file under it (where
    Gatekeeper templates and constraints, and enforcement overrides, are), in a fixed order."""
    return _walk(directory, lambda name: name.endswith((".yaml", ".yml", ".json"))
                 and not name.startswith("."))


def _walk(directory: str, wanted: Callable[[str], bool]) -> list[tuple[str, str]]:
    found = []
    for root, dirs, files in os.walk(directory):
        # A ConfigMap volume holds each file twice (via hidden "..<timestamp>" dirs): skip those.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if wanted(name):
                full = os.path.join(root, name)
                found.append((os.path.relpath(full, directory), full))
    return found
