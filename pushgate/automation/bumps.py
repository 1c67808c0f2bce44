"""Bump commits: their message (what `git log` shows) and the pins that reverting them leaves.

Called by `scanner` (writing the message) and `history` (reading the branch). Pure: no I/O.

A bump commit's message is

    pushgate: bump images

    apps/web.yaml: Deployment/shop/web web: 127.0.0.1:5000/shop/web 1.0.0 -> 1.1.0
    apps/jobs.yaml: CronJob/shop/report report: registry.example/report main-17 -> main-18

one line per bumped container: `path: workload container: image old -> new`. A commit on the
branch whose message says git's "This reverts commit <sha>." about a bump commit pins the tags
that bump introduced: they are never proposed again, and only a tag the policy prefers to them
is. Reverting the revert ("Reapply") lifts the pin. The state is derived from history alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SUBJECT = "pushgate: bump images"
_LINE = re.compile(r"^(?P<path>\S+): (?P<ref>\S+) (?P<container>\S+): (?P<image>\S+) "
                   r"(?P<old>\S+) -> (?P<new>\S+)$")
_REVERTS = re.compile(r"This reverts commit ([0-9a-f]{40})")
NO_TAG = "(none)"


@dataclass(frozen=True)
class Bump:
    path: str
    ref: str  # the workload: "Deployment/shop/web"
    container: str
    image: str  # the image name without tag: "127.0.0.1:5000/shop/web"
    old: str  # the old tag, "" when the image named none
    new: str

    def line(self) -> str:
        return f"{self.path}: {self.ref} {self.container}: {self.image} {self.old or NO_TAG} -> {self.new}"


def message(bumps: Iterable[Bump]) -> str:
    body = "\n".join(b.line() for b in sorted(bumps, key=lambda b: (b.path, b.ref, b.container)))
    return f"{SUBJECT}\n\n{body}\n"


def parse(text: str) -> list[Bump] | None:
    """The bumps a commit message lists, or None when it is not a bump commit's."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != SUBJECT:
        return None
    out = []
    for line in lines[1:]:
        m = _LINE.match(line.strip())
        if m:
            old = m["old"]
            out.append(Bump(m["path"], m["ref"], m["container"], m["image"],
                            "" if old == NO_TAG else old, m["new"]))
    return out


def reverted(text: str) -> str | None:
    """The commit a revert names ("This reverts commit <sha>."; the last one wins)."""
    found = _REVERTS.findall(text)
    return found[-1] if found else None


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str


def pins(commits: Iterable[Commit], lookup: dict[str, str]) -> dict[str, set[str]]:
    """{image: tags pinned out} from the branch's commits, oldest first; `lookup` gives the
    message of a reverted commit that is not among them (reachable from elsewhere)."""
    messages = dict(lookup)
    state: dict[str, bool] = {}  # bump commit -> currently reverted
    reverts: dict[str, str] = {}  # revert commit -> the bump it reverted
    for c in commits:
        messages[c.sha] = c.message
        target = reverted(c.message)
        if target is None:
            continue
        if parse(messages.get(target, "")) is not None:
            state[target] = True
            reverts[c.sha] = target
        elif target in reverts:  # a revert of a revert re-applies the bump
            state[reverts[target]] = False
    out: dict[str, set[str]] = {}
    for sha, is_reverted in state.items():
        if is_reverted:
            for b in parse(messages[sha]) or []:
                out.setdefault(b.image, set()).add(b.new)
    return out
