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
        tag = "warning: " if self.severity is Severity.WARNING else ""
        return sanitize(f"{tag}{' '.join(parts)} {self.message}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(path: str, line: int, obj: str, rule: str, message: str) -> Violation:
    return Violation(path, line, obj, rule, message, Severity.ERROR)


def warning(path: str, line: int, obj: str, rule: str, message: str) -> Violation:
    return Violation(path, line, obj, rule, message, Severity.WARNING)


def _sort_key(v: Violation) -> tuple[int, str, int, str, str, str]:
    return (0 if v.is_error else 1, v.path, v.line, v.obj, v.rule, v.message)


def summary(violations: Iterable[Violation]) -> str:
    vs = list(violations)
    errors = sum(1 for v in vs if v.is_error)
    warnings = len(vs) - errors
    files = len({v.path for v in vs})
    return (
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    )


def report(violations: Iterable[Violation]) -> list[str]:
    """Every problem, sorted (errors first, then by file and line), then the summary line."""
    vs = sorted(set(violations), key=_sort_key)
    return [str(v) for v in vs] + [summary(vs)]
