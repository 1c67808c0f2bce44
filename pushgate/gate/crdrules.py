"""How the API server reads a CRD schema where JSON schema (and Python) read it otherwise.

Called by `pushgate.gate.schemas` only, for custom resources: `pattern` is an RE2 expression (the
API server's Go `regexp`; Python's `re` refuses valid ones such as `^(?i)(abort|warn)?$`), and CEL
rules (`x-kubernetes-validations`) are not evaluated here: a CRD that has them gets a warning that
the live check applies them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import re2

from pushgate.core import violations

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported to the pusher, not to stderr


@functools.lru_cache(maxsize=4096)
def re2_compile(pattern: str) -> Any:
    """An RE2 expression, as the API server's Go `regexp` reads a CRD's `pattern`."""
    return re2.compile(pattern, _OPTIONS)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    from jsonschema import ValidationError  # type: ignore[import-untyped]  # imported by now

    if isinstance(instance, str) and not re2_compile(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


class PatternError(ValueError):
    """A `pattern` that is no RE2 expression; the message is RE2's reason."""


def check_pattern(pattern: str) -> None:
    try:
        re2_compile(pattern)
    except re2.error as e:
        raise PatternError(e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes)
                           else str(e)) from e


def keywords() -> dict[str, Any]:
    """The keyword functions a CRD's validator class overrides (on jsonschema's own class)."""
    return {"pattern": _pattern}



def has_cel(node: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(node, dict):
        return bool(node.get("x-kubernetes-validations")) or any(
            has_cel(v, depth + 1) for v in node.values())
    if isinstance(node, list):
        return any(has_cel(v, depth + 1) for v in node)
    return False


def cel_note(crd: dict[str, Any], path: str, line_of: Callable[[str], int],
              ref: str) -> list[violations.Violation]:
    """A warning that this CRD's CEL rules are judged by the cluster only, not statically."""
    versions = _get(crd, "spec", "versions")
    if not isinstance(versions, list) or not any(
            has_cel(_get(v, "schema", "openAPIV3Schema")) for v in versions):
        return []
    return [violations.warning(
        path, line_of("spec.versions"), ref, "schema.cel",
        "its x-kubernetes-validations (CEL) rules are not evaluated by the static check: the "
        "live check (server-side dry-run) applies them, or the API server at apply")]


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node
