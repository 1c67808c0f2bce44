"""The prune guard: which prunes a push may not make without saying so (`-o allow-prune`).

Called by the git server's live gate with the plan the reconciler computed against the live
cluster. Pure: the plan in, the reasons out. Prune accidents are a recurring GitOps outage (an
app that suddenly has no resources, an environment deleted by one change): a push that would
delete a protected kind, more than a set number or share of the managed objects, or every
object of a namespace, is refused with the list, unless the pusher may prune and asks to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rules:
    max_objects: int = 10  # more than this many deletions in one push
    max_share: float = 0.5  # more than this share of the managed objects (two deletions or more)
    min_namespace: int = 2  # every object of a namespace that held at least this many


def reasons(prune: Sequence[Mapping[str, Any]], managed: int, remaining_namespaces: Iterable[str],
            rules: Rules) -> list[str]:
    """Why the deletions of `prune` (plan entries; only `willDelete` ones count) need
    `-o allow-prune`; [] when they do not. `remaining_namespaces`: namespaces the push still has
    objects in."""
    deleting = [p for p in prune if p.get("willDelete")]
    if not deleting:
        return []
    out = []
    protected = [str(p["ref"]) for p in deleting if p.get("protected")]
    if protected:
        out.append(f"it deletes {_count(protected, 'object')} of a protected kind: {_list(protected)}")
    n = len(deleting)
    if n > rules.max_objects:
        out.append(f"it deletes {n} objects, more than the limit of {rules.max_objects}")
    elif n >= 2 and managed and n / managed > rules.max_share:
        out.append(f"it deletes {n} of the {managed} managed objects, more than "
                   f"{rules.max_share:.0%} of them")
    keep = set(remaining_namespaces)
    per_ns = Counter(str(p.get("namespace") or "") for p in deleting)
    emptied = sorted(ns for ns, k in per_ns.items() if ns and ns not in keep and k >= rules.min_namespace)
    for ns in emptied:
        out.append(f"it deletes every object of namespace {ns} ({per_ns[ns]})")
    return out


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _list(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
