"""Semantic versions and ranges as Flux's ImagePolicy reads them (Masterminds/semver v3).

Called by `tagpolicy` for `semver:<range>` policies. Pure: no I/O.

Versions are read leniently, as `semver.NewVersion` does: a `v` prefix and missing minor or patch
parts are accepted (`v1.2` is 1.2.0). A range is `||`-separated groups of constraints joined by
`,` or spaces: `=`, `!=`, `>`, `<`, `>=`, `<=`, `~` (`~>`), `^`, hyphen ranges (`1.2 - 1.4`) and
wildcards (`1.2.x`, `1.*`, `*`); a missing part is a wildcard (`>1.2` means `>=1.3.0`). A version
with a pre-release matches a group only when a constraint of that group names a pre-release
(`>=1.0.0-0`), so `>=1.0` never picks `2.0.0-rc.1`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_VERSION = re.compile(
    r"^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
_PART = r"(?:0|[1-9][0-9]*|[xX*])"
_CONSTRAINT = re.compile(
    r"^(=|!=|>=|=>|<=|=<|>|<|~>|~|\^)?\s*v?(" + _PART + r")(?:\.(" + _PART + r"))?(?:\.(" + _PART + r"))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_WILD = ("x", "X", "*")


class RangeError(ValueError):
    """A range that does not parse; its message names the part."""


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        """A sort key with semver 2.0 precedence (build metadata ignored)."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base + ("-" + ".".join(self.prerelease) if self.prerelease else "")


def parse(text: str) -> Version | None:
    """The version a tag names, or None when it is not one."""
    m = _VERSION.match(text.strip())
    if not m:
        return None
    major, minor, patch, pre, _build = m.groups()
    return Version(int(major), int(minor or 0), int(patch or 0), tuple(pre.split(".")) if pre else ())


@dataclass(frozen=True)
class _Constraint:
    test: Callable[[Version], bool]
    has_prerelease: bool


@dataclass(frozen=True)
class Range:
    text: str
    groups: tuple[tuple[_Constraint, ...], ...]

    def allows(self, v: Version) -> bool:
        for group in self.groups:
            if v.prerelease and not any(c.has_prerelease for c in group):
                continue
            if all(c.test(v) for c in group):
                return True
        return False


def parse_range(text: str) -> Range:
    if not text.strip():
        raise RangeError("empty semver range")
    groups = []
    for alternative in text.split("||"):
        # hyphen ranges first: "1.2 - 1.4.5" is ">=1.2 <=1.4.5"
        alternative = re.sub(r"(\S+)\s+-\s+(\S+)", r">=\1 <=\2", alternative.strip())
        # "> 1.2" and ">= 1.2": join an operator to its version before splitting on spaces
        alternative = re.sub(r"(!=|>=|=>|<=|=<|~>|[=><~^])\s+", r"\1", alternative)
        parts = [p for p in re.split(r"[\s,]+", alternative) if p]
        if not parts:
            raise RangeError(f"empty alternative in semver range {text!r}")
        groups.append(tuple(_constraint(p) for p in parts))
    return Range(text, tuple(groups))


def _constraint(text: str) -> _Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        raise RangeError(f"{text!r} is not a semver constraint")
    op, major_s, minor_s, patch_s, pre = m.groups()
    op = {"=>": ">=", "=<": "<=", "~>": "~", None: "="}.get(op, op)
    if major_s in _WILD:
        return _Constraint(lambda v: op != "!=" and op != "<" and op != ">", bool(pre))
    major = int(major_s)
    minor_wild = minor_s is None or minor_s in _WILD
    patch_wild = minor_wild or patch_s is None or patch_s in _WILD
    minor = 0 if minor_wild else int(minor_s)
    patch = 0 if patch_wild else int(patch_s)
    base = Version(major, minor, patch, tuple(pre.split(".")) if pre else ())
    lo = base.key()

    def upper(bump: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        if bump == "major":
            return Version(major + 1, 0, 0).key()
        return Version(major, minor + 1, 0).key()

    if op == "^":
        if major > 0 or minor_wild:
            hi = upper("major")
        elif minor > 0 or patch_wild:
            hi = upper("minor")
        else:
            hi = Version(0, 0, patch + 1).key()
        return _Constraint(lambda v: lo <= v.key() < hi, bool(pre))
    if op == "~" or (op == "=" and patch_wild):
        hi = upper("major") if minor_wild else upper("minor")
        return _Constraint(lambda v: lo <= v.key() < hi, bool(pre))
    if op == "!=" and patch_wild:
        hi = upper("major") if minor_wild else upper("minor")
        return _Constraint(lambda v: not lo <= v.key() < hi, bool(pre))
    if op == ">" and patch_wild:  # ">1.2" is past every 1.2.x
        hi = upper("major") if minor_wild else upper("minor")
        return _Constraint(lambda v: v.key() >= hi, bool(pre))
    if op == "<=" and patch_wild:  # "<=1.2" includes every 1.2.x
        hi = upper("major") if minor_wild else upper("minor")
        return _Constraint(lambda v: v.key() < hi, bool(pre))
    tests: dict[str, Callable[[Version], bool]] = {
        "=": lambda v: v.key() == lo, "!=": lambda v: v.key() != lo, ">": lambda v: v.key() > lo,
        "<": lambda v: v.key() < lo, ">=": lambda v: v.key() >= lo, "<=": lambda v: v.key() <= lo}
    return _Constraint(tests[op], bool(pre))
