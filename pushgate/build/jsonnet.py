"""Jsonnet files in a tree, rendered the way Argo CD's directory source renders them.

Called by the build (`pushgate.build.build`) when `build.jsonnet` is on (the default, as in Argo
CD). Every `*.jsonnet` file outside kustomizations, charts and excluded paths is evaluated on its
own (files it imports included: Argo CD does the same); `*.libsonnet` files are only imported.
The output must be an object, an array of objects or a List, like a JSON manifest. Imports
resolve inside the tree only: relative to the importing file, then from the repository root.

Evaluation runs in a worker process (`jsonnetworker.py`, go-jsonnet through the `gojsonnet`
binding) over a materialised copy of the tree, bounded by the build deadline, an address-space
limit and the build's limit on rendered output. Errors name the file and line go-jsonnet reports.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pushgate.build import proc

SUFFIX = ".jsonnet"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jsonnetworker.py")
# go-jsonnet's locations: "dir/app.jsonnet:12:3-9" (a range may span lines: "(3:1)-(5:2)").
_LOCATION = re.compile(r"(?:^|[\s(])([^\s:()]+\.(?:jsonnet|libsonnet|json)):\(?(\d+):")


@dataclass(frozen=True)
class Output:
    file: str
    json: str  # the evaluated document, "" when `error` is set
    error: str = ""
    line: int = 0  # where the error is, in `error_file`
    error_file: str = ""


def entries(paths: Iterable[str]) -> list[str]:
    return sorted(p for p in paths if p.endswith(SUFFIX))


def render(files: Mapping[str, Callable[[], bytes]], targets: list[str], *, timeout: float,
           max_output: int) -> list[Output]:
    """Evaluate each of `targets` (repo-relative .jsonnet paths), in order, in one worker."""
    if not targets:
        return []
    with tempfile.TemporaryDirectory(prefix="pushgate-jsonnet-") as tmp:
        tree = os.path.join(tmp, "tree")
        for path, read in files.items():
            full = os.path.join(tree, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(read())
        env = proc.minimal_env(os.path.join(tmp, "home"))
        argv = [sys.executable, "-I", _WORKER, tree, *targets]
        partial = b""
        cut = ""
        try:
            res = proc.run(argv, env=env, cwd=tmp, timeout=timeout, max_output=max_output,
                           what="Jsonnet evaluation")
            partial = res.stdout
            if res.returncode != 0:
                text = res.stderr.decode("utf-8", "replace")
                cut = ("evaluation ran out of memory" if "out of memory" in text
                       else f"the Jsonnet evaluator failed: {proc.clean_message(res.stderr, tree, 200)}")
        except proc.RenderError as e:
            partial, cut = e.partial, str(e)
    done = [o for o in map(_output, map(_json_line, partial.splitlines())) if o is not None]
    seen = {o.file for o in done}
    for t in targets:
        if t not in seen:
            # The first file without a result is the one the worker was cut in.
            done.append(Output(t, "", cut or "not evaluated", 0, t))
            cut = cut and "not evaluated: an earlier file used up the build's time or output limit"
    order = {t: i for i, t in enumerate(targets)}
    return sorted(done, key=lambda o: order.get(o.file, 0))


def _json_line(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:  # the last line of output cut at the limit
        return None


def _output(doc: object) -> Output | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("file"), str):
        return None
    if isinstance(doc.get("json"), str):
        return Output(doc["file"], doc["json"])
    error = str(doc.get("error") or "evaluation failed")
    where, line = doc["file"], 0
    m = _LOCATION.search(error)
    if m:
        where, line = posixpath.normpath(m.group(1)), int(m.group(2))
    first = error.strip().splitlines()[0] if error.strip() else error
    for prefix in ("RUNTIME ERROR: ", "STATIC ERROR: "):
        first = first.removeprefix(prefix)
    # A static error names its location first: "app.jsonnet:1:5-6 Unexpected ...".
    first = re.sub(r"^[^\s:]+\.(?:jsonnet|libsonnet):[\d:()\-,]+:?\s*", "", first)
    return Output(doc["file"], "", first, line, where)


def object_line(text: bytes, kind: str, ordinal: int) -> int:
    """Best-effort line of the `ordinal`-th object of `kind` in a Jsonnet file: its literal
    `kind: 'X'` (or `"kind": "X"`); 0 when the file does not state it."""
    quoted = re.escape(kind.encode())
    pattern = re.compile(rb"""(?:^|[\s{,])["']?kind["']?\s*:\s*["']""" + quoted + rb"""["']""", re.M)
    found = list(pattern.finditer(text))
    if not found:
        return 0
    at = found[min(ordinal, len(found) - 1)].end()
    return text.count(b"\n", 0, at) + 1
