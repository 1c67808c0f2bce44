"""How schema problems read: jsonschema errors turned into short, human messages.

Called by `pushgate.gate.schemas` only. Values are shown shortened, and never for a Secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

SHOW_MAX = 80  # longest rendering of a value in a message


def dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def short(text: str, limit: int = SHOW_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(value: Any) -> str:
    try:
        return short(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):  # keys YAML allows but JSON does not (dates), or a cycle
        return short(repr(value))


def _types(spec: Any) -> str:
    names = [spec] if isinstance(spec, str) else [t for t in spec if t != "null"] or list(spec)
    return " or ".join(names)


_FORMAT_PHRASES = {"byte": "must be a base64 string", "int32": "must fit in 32 bits",
                   "int64": "must fit in 64 bits"}


def problems(errors: Iterable[Any], redact: bool) -> Iterator[tuple[str, str, str]]:
    """(rule path, line path, message) per problem; `redact` hides every value (Secrets)."""
    seen_required: set[tuple[str, int]] = set()
    for e in errors:
        where = dotted(e.absolute_path)
        at = f"{where}: " if where else ""
        got = "" if redact else f" (got {show(e.instance)})"
        keyword, spec = e.validator, e.validator_value
        if keyword == "additionalProperties" and isinstance(e.instance, dict):
            known, patterns = e.schema.get("properties", {}), e.schema.get("patternProperties", {})
            for field in e.instance:
                if field not in known and not any(re.search(p, str(field)) for p in patterns):
                    inner = dotted([*e.absolute_path, field])
                    yield inner, inner, f'{at}unknown field "{short(str(field))}"'
        elif keyword == "required" and isinstance(e.instance, dict):
            # jsonschema raises one error per missing field, without naming it: report all once.
            if (where, id(e.schema)) not in seen_required:
                seen_required.add((where, id(e.schema)))
                for field in (f for f in spec if f not in e.instance):
                    rule = f"{where}.{field}" if where else field
                    yield rule, where, f'{at}missing required field "{short(field)}"'
        elif keyword == "type":
            yield where, where, (f"{at}must be of type {_types(spec)}" if redact
                                 else f"{at}{show(e.instance)} is not of type {_types(spec)}")
        elif keyword in ("oneOf", "anyOf"):
            which = "exactly one" if keyword == "oneOf" else "any"
            yield where, where, f"{at}does not match {which} of the allowed schemas{got}"
        elif keyword == "format" and spec in _FORMAT_PHRASES:
            yield where, where, f"{at}{_FORMAT_PHRASES[spec]}{got}"
        elif redact:
            yield where, where, f"{at}does not satisfy {keyword}: {short(repr(spec))}"
        else:
            # jsonschema's wording, with its repr of the value (maybe huge) shortened.
            text, value = str(e.message), repr(e.instance)
            text = show(e.instance) + text[len(value):] if text.startswith(value) else text
            yield where, where, f"{at}{short(text, 2 * SHOW_MAX)}"
