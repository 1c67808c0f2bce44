"""Where the active policy set comes from: a commit of `policies.git`, or the `--policies` directory.

Called by the git server (each worker's active-policy holder and the policy push check) and by
`pushgate validate`. A source is a loaded policy set (`policies.load`, which also picks up the
Gatekeeper templates and constraints of the same directory) with its enforcement overrides
(`enforcement.yaml`) and a label that verdicts, notes, the status API and the page carry:
`commit:<sha>` for a policy commit, `dir:<version>` for a directory (the version covers the
modules, the packages considered and the overrides).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pushgate.gate import enforcement, policies


@dataclass(frozen=True)
class Source:
    policy_set: policies.PolicySet
    overrides: enforcement.Enforcement = enforcement.NONE
    commit: str = ""  # the policies.git commit; "" for a directory

    @property
    def directory(self) -> str:
        return self.policy_set.directory

    @property
    def version(self) -> str:
        """The policy set's version, changed by its enforcement overrides too."""
        if not self.overrides.rules:
            return self.policy_set.version
        return hashlib.sha256(f"{self.policy_set.version}\0{self.overrides.digest}".encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"commit:{self.commit}" if self.commit else f"dir:{self.version}"

    def describe(self) -> list[str]:
        head = (f"policy source: policies.git commit {self.commit}" if self.commit
                else f"policy source: directory {self.directory}")
        return [head, *self.policy_set.describe(), *self.overrides.describe()]

    def to_json(self) -> dict[str, str]:
        """What `/api/v1/status` says about it."""
        return {"source": "commit" if self.commit else "directory", "label": self.label,
                "commit": self.commit, "directory": self.directory, "version": self.version}


def load(directory: str, namespaces: Sequence[str] | None = None, *, commit: str = "") -> Source:
    """The policy set of `directory` with its overrides; PolicyError names what is wrong."""
    policy_set = policies.load(directory, namespaces=namespaces)
    return Source(policy_set, enforcement.load(directory, policy_set), commit)

