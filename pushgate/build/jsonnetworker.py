"""The Jsonnet evaluator's process: evaluates .jsonnet files of a materialised tree, one by one.

Started by `pushgate.build.jsonnet.render` as `python -I jsonnetworker.py ROOT FILE...` (a
process of its own, so a file that loops or allocates without end is cut by a timeout and an
address-space limit, never by the gate's own process). Uses go-jsonnet (the `gojsonnet`
binding: the evaluator Argo CD uses). Imports resolve only inside ROOT: relative to the
importing file, then from ROOT; absolute paths and `..` past the root are refused.

Writes one JSON line per file, flushed as it goes, so the caller knows which file a timeout cut:
`{"file": F, "json": TEXT}` or `{"file": F, "error": MESSAGE}`. Standard library and
`_gojsonnet` only: the script runs isolated (`-I`), without pushgate on its path.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import resource
import sys

_MEMORY = 2 * 1024 * 1024 * 1024  # address space: generous for real configs, bounds a bomb
_MAX_STACK = 500  # go-jsonnet's own default, named here so it is part of the contract


class _Importer:
    def __init__(self, root: str) -> None:
        self.root = root
        self.refused: list[tuple[str, str, str]] = []  # (importing directory, import, why)

    def __call__(self, base: str, rel: str) -> tuple[str, bytes]:
        if rel.startswith("/") or "\0" in rel:
            return self.refuse(base, rel, f"import {rel!r}: absolute paths are not allowed (imports "
                               f"resolve inside the repository)")
        for candidate in (posixpath.join(base, rel), rel):
            path = posixpath.normpath(candidate)
            if path == ".." or path.startswith("../"):
                continue
            full = os.path.join(self.root, path)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    return path, f.read()
        return self.refuse(base, rel, f"import {rel!r}: not found in the repository")

    def refuse(self, base: str, rel: str, message: str) -> tuple[str, bytes]:
        # gojsonnet 0.22 copies a callback's error message without its terminator: what follows
        # it is heap garbage, sometimes invalid UTF-8, so the evaluator's text cannot be trusted.
        # The refusal is reported from here instead (see `refusal`).
        self.refused.append((base, rel, message))
        raise RuntimeError(message)

    def refusal(self) -> str:
        """The first refused import, at the line that imports it: "RUNTIME ERROR: ...\n\tF:L:"."""
        base, rel, message = self.refused[0]
        where = ""
        directory = os.path.join(self.root, base)
        literal = re.compile(r"""import(?:str|bin)?\s*(['"])""" + re.escape(rel) + r"\1")
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if not name.endswith((".jsonnet", ".libsonnet")):
                continue
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            m = literal.search(text)
            if m:
                where = f"\n\t{posixpath.join(base, name)}:{text.count(chr(10), 0, m.start()) + 1}:"
                break
        return f"RUNTIME ERROR: importer error: {message}{where}"


def main(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY, _MEMORY))
    import _gojsonnet  # after the limit: the Go runtime starts within it

    root, entries = argv[0], argv[1:]
    importer = _Importer(root)
    for entry in entries:
        importer.refused.clear()
        with open(os.path.join(root, entry), encoding="utf-8", errors="surrogateescape") as f:
            source = f.read()
        try:
            out = _gojsonnet.evaluate_snippet(entry, source, import_callback=importer,
                                              max_stack=_MAX_STACK)
            line = {"file": entry, "json": out}
        except RuntimeError as e:
            ours = any(message in str(e) for _, _, message in importer.refused)
            line = {"file": entry, "error": importer.refusal() if ours else str(e)}
        except UnicodeDecodeError:  # garbage after a refusal's message: see `_Importer.refuse`
            line = {"file": entry, "error": importer.refusal() if importer.refused else "evaluation failed"}
        except MemoryError:
            line = {"file": entry, "error": "out of memory"}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
