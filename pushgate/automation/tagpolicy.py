"""Tag policies: which of a repository's tags a container should run (Flux ImagePolicy semantics).

Called by `workloads` (parsing the annotations) and `scanner` (choosing a tag). Pure: no I/O.

A policy is one of `semver:<range>`, `alphabetical:asc|desc`, `numerical:asc|desc`, with an
optional filter (an RE2 pattern, as Flux's Go `regexp`; tags it does not match are ignored) and
extract template (`$name`, `${name}`, `$1`: Go's `Regexp.Expand`; what the policy orders instead of
the tag). As in Flux, `asc` selects the greatest value and `desc` the least, and when two tags
extract to the same value the later one in the registry's list stands for it. Where pushgate
differs: a tag that is not a number under `numerical` is ignored (Flux fails the policy).

"Newer" means "preferred by the policy": `ordered()` lists tags from least to most preferred.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2

from pushgate.automation import errors, semver

_ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class TagPolicy:
    kind: str  # semver | alphabetical | numerical
    spec: str  # the annotation's text, for messages
    range: semver.Range | None = None
    order: str = "asc"
    pattern: Any = None  # a compiled re2 pattern, or None
    extract: str = ""

    def describe(self) -> str:
        out = self.spec
        if self.pattern is not None:
            out += f" filter {self.pattern.pattern!r}"
            if self.extract:
                out += f" extract {self.extract!r}"
        return out


def parse(spec: str, pattern: str = "", extract: str = "") -> TagPolicy:
    """A policy from its annotations; `errors.PolicyError` names what is wrong."""
    kind, sep, arg = spec.strip().partition(":")
    kind, arg = kind.strip(), arg.strip()
    compiled = None
    if pattern:
        try:
            compiled = re2.compile(pattern)
        except Exception as e:  # re2.error, or a ValueError for bad syntax
            raise errors.PolicyError(f"filter {pattern!r} is not an RE2 pattern: {e}") from e
    elif extract:
        raise errors.PolicyError("an extract needs a filter pattern")
    if extract:
        _check_extract(extract, compiled)
    if kind == "semver":
        if not sep or not arg:
            raise errors.PolicyError(f"{spec!r}: expected semver:<range>, e.g. semver:>=1.0 <2.0")
        try:
            rng = semver.parse_range(arg)
        except semver.RangeError as e:
            raise errors.PolicyError(f"{spec!r}: {e}") from e
        return TagPolicy("semver", spec.strip(), range=rng, pattern=compiled, extract=extract)
    if kind in ("alphabetical", "numerical"):
        order = arg or "asc"
        if order not in _ORDERS:
            raise errors.PolicyError(f"{spec!r}: order {order!r}: expected asc or desc")
        return TagPolicy(kind, spec.strip(), order=order, pattern=compiled, extract=extract)
    raise errors.PolicyError(f"{spec!r}: expected semver:<range>, alphabetical:asc|desc or "
                             f"numerical:asc|desc")


def _check_extract(extract: str, compiled: Any) -> None:
    for m in re.finditer(r"\$(?:\{([^}]*)\}|([A-Za-z0-9_]+))", extract):
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name.isdigit():
            if int(name) > compiled.groups:
                raise errors.PolicyError(f"extract {extract!r}: the filter has no group {name}")
        elif name not in compiled.groupindex:
            raise errors.PolicyError(f"extract {extract!r}: the filter has no group named {name!r}")


def _expand(template: str, match: Any) -> str:
    """Go's `Regexp.ExpandString`: `$$` is `$`, `$name` takes the longest name, an unknown or
    unmatched group is empty."""
    def group(name: str) -> str:
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except (IndexError, KeyError, ValueError):
            return ""
        return value or ""

    out, i = [], 0
    for m in re.finditer(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z0-9_]+))", template):
        out.append(template[i:m.start()])
        out.append("$" if m.group(1) else group(m.group(2) if m.group(2) is not None else m.group(3)))
        i = m.end()
    out.append(template[i:])
    return "".join(out)


def _values(p: TagPolicy, tags: Iterable[str]) -> dict[str, str]:
    """The value the policy orders for each kept tag: {value: tag}, later tags winning."""
    out: dict[str, str] = {}
    for tag in tags:
        value = tag
        if p.pattern is not None:
            m = p.pattern.search(tag)
            if m is None:
                continue
            if p.extract:
                value = _expand(p.extract, m)
        out[value] = tag
    return out


def ordered(p: TagPolicy, tags: Iterable[str]) -> list[str]:
    """The tags the policy can choose from, least preferred first (the last is the latest)."""
    values = _values(p, tags)
    if p.kind == "semver":
        assert p.range is not None
        found = []
        for value, tag in values.items():
            v = semver.parse(value)
            if v is not None and p.range.allows(v):
                found.append((v.key(), tag, tag))
        return [t for _k, _s, t in sorted(found)]
    if p.kind == "numerical":
        nums = []
        for value, tag in values.items():
            try:
                n = float(value)
            except ValueError:
                continue
            if math.isfinite(n):
                nums.append((n, tag))
        nums.sort(reverse=p.order == "desc")
        return [t for _n, t in nums]
    items = sorted(values.items(), reverse=p.order == "desc")
    return [t for _v, t in items]


def latest(p: TagPolicy, tags: Iterable[str], *, pinned: Iterable[str] = ()) -> str | None:
    """The tag the policy selects, past every pinned tag it can order (a reverted bump's tag is
    never proposed again; only a tag the policy prefers to it is)."""
    tags = list(tags)
    pins = set(pinned)
    order = ordered(p, tags + sorted(pins))
    floor = max((order.index(t) for t in pins if t in order), default=-1)
    choices = [t for t in order[floor + 1:] if t not in pins and t in tags]
    return choices[-1] if choices else None


def prefers(p: TagPolicy, candidate: str, current: str) -> bool:
    """Whether the policy orders `candidate` after `current`; True when `current` is not a tag
    the policy can order at all (it is then replaced, as Flux does)."""
    order = ordered(p, [current, candidate])
    if current not in order:
        return candidate in order
    return candidate in order and order.index(candidate) > order.index(current)
