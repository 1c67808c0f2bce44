"""Problems found in a push, and the report `git push` prints.

Built by every check of the gate (`manifests`, `schemas`, the policy engines) and rendered by
`report()` for the git server's side-band and for `pushgate validate`. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

# C0/C1 control bytes and ESC sequences: manifest content is echoed to the pusher's terminal.
_CONTROL = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (window title, hyperlinks)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def sanitize(text: str) -> str:
    """Strip terminal control bytes and fold newlines so one problem stays one line."""
    return _CONTROL.sub("", text.replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"
    DRYRUN = "dryrun"  # a Gatekeeper constraint in dryrun: reported, never blocking


@dataclass(frozen=True, order=True)
class Violation:
    """One problem: where it is, which object, which rule, and what is wrong.

    `str()` is exactly the line `git push` prints after `remote: `.
    """

    path: str
    line: int
    obj: str  # "Kind/namespace/name", "Kind/name" for cluster-scoped, "" if not an object
    rule: str  # a policy rule ("k8s.images/deny"), a schema path, or a loader rule ("yaml")
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line > 0 else self.path
        parts = [where]
        if self.obj:
            parts.append(self.obj)
        parts.append(f"[{self.rule}]")
        tag = {Severity.WARNING: "warning: ", Severity.DRYRUN: "dryrun: "}.get(self.severity, "")
        return sanitize(f"{tag}{' '.join(parts)} {self.message}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(path: str, line: int, obj: str, rule: str, message: str) -> Violation:
    return Violation(path, line, obj, rule, message, Severity.ERROR)


def warning(path: str, line: int, obj: str, rule: str, message: str) -> Violation:
    return Violation(path, line, obj, rule, message, Severity.WARNING)


def dryrun(path: str, line: int, obj: str, rule: str, message: str) -> Violation:
    return Violation(path, line, obj, rule, message, Severity.DRYRUN)


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.DRYRUN: 2}


def _sort_key(v: Violation) -> tuple[int, str, int, str, str, str]:
    return (_ORDER[v.severity], v.path, v.line, v.obj, v.rule, v.message)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def summary(violations: Iterable[Violation], *, files: int | None = None,
            objects: int | None = None, exceptions: int = 0) -> str:
    """"2 errors, 1 warning; checked 12 files, 40 objects" when the caller says what it checked
    (files: sources read, a rendered kustomization, chart or Jsonnet file counting as one;
    objects: what they made). Without counts, the older "... in N files": the files with problems.
    Exceptions granted by policies (conftest's) are counted after the warnings when there are any.
    """
    vs = list(violations)
    errors = sum(1 for v in vs if v.is_error)
    dry = sum(1 for v in vs if v.severity is Severity.DRYRUN)
    head = f"{_count(errors, 'error')}, {_count(len(vs) - errors - dry, 'warning')}"
    if dry:
        head += f", {dry} dry-run"
    if exceptions:
        head += f", {_count(exceptions, 'exception')}"
    if files is None and objects is None:
        return f"{head} in {_count(len({v.path for v in vs}), 'file')}"
    checked = [_count(n, noun) for n, noun in ((files, "file"), (objects, "object")) if n is not None]
    return f"{head}; checked {', '.join(checked)}"


def report(violations: Iterable[Violation], *, files: int | None = None,
           objects: int | None = None, exceptions: int = 0) -> list[str]:
    """Every problem, sorted (errors first, then by file and line), then the summary line."""
    vs = sorted(set(violations), key=_sort_key)
    return [str(v) for v in vs] + [summary(vs, files=files, objects=objects, exceptions=exceptions)]
