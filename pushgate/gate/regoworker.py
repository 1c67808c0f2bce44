"""The embedded policy engine's worker process: regopy (rego-cpp) behind a pipe.

Started and supervised by `pushgate.gate.embedded`; never imported by the server itself. rego-cpp
is native code that can crash the process (a `with input as` + `sprintf` segfaults it), so it
runs here, where a crash costs one worker, not the server. Protocol: one JSON request per line on
stdin, one JSON reply per line on stdout.

    {"op": "load", "modules": [[name, source], ...], "entrypoints": [...]}  -> {"ok": true}
    {"op": "eval", "push": {...} | null, "objects": [...]}  -> {"ok": true, "results": [[[ep, r], ...], ...]}
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


class Worker:
    def __init__(self) -> None:
        self.modules: list[tuple[str, str]] = []
        self.entrypoints: list[str] = []
        self._bundle: Any = None
        self._interp: Any = None
        self._push_key: str | None = None

    def load(self, modules: list[tuple[str, str]], entrypoints: list[str]) -> None:
        self.modules, self.entrypoints = modules, entrypoints
        self._build(None)

    def _build(self, push: dict[str, Any] | None) -> None:
        from regopy import Interpreter

        interp = Interpreter()
        for name, src in self.modules:
            interp.add_module(name, src)
        if push is not None:
            interp.add_data({"pushgate": {"push": push}})
        query = "; ".join(f"x{i} := data.{ep.replace('/', '.')}" for i, ep in enumerate(self.entrypoints))
        bundle = interp.build(query or "true", list(self.entrypoints))
        if not bundle.ok():
            raise ValueError(f"policies do not compile: {bundle}")
        self._interp, self._bundle = interp, bundle
        self._push_key = json.dumps(push, sort_keys=True) if push is not None else None

    def evaluate(self, push: dict[str, Any] | None, objects: list[Any]) -> list[list[Any]]:
        for doc in [push, *objects]:
            if _holds_nul(doc):
                # regopy hands strings to C as NUL-terminated: it would decide on a truncated
                # string (`{"hostNetwork\0": false, "hostNetwork": true}` passes). Fail closed.
                raise ValueError("a pushed object holds a NUL character (U+0000), which the "
                                 "embedded policy engine cannot evaluate faithfully")
        key = json.dumps(push, sort_keys=True) if push is not None else None
        if key != self._push_key:
            # Data is compiled into the bundle; rebuild only when policies read the push.
            self._build(push)
        out = []
        for obj in objects:
            self._interp.set_input(obj)
            row = []
            for ep in self.entrypoints:
                res = self._interp.query_bundle_entrypoint(self._bundle, ep)
                if not res.ok():
                    raise ValueError(f"{ep}: {str(res)[:500]}")
                doc = json.loads(str(res))
                value = doc.get("expressions", [None])[0] if isinstance(doc, dict) else None
                row.append([ep, value])
            out.append(row)
        return out


def _holds_nul(value: Any) -> bool:
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return True
        elif isinstance(v, dict):
            if any("\x00" in k for k in v):
                return True
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return False


def main() -> None:
    # rego-cpp prints some evaluation errors (a yaml.unmarshal or json.unmarshal parse error) on
    # fd 1, which is the reply pipe: answer on a private copy of it and point fd 1 at stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    worker = Worker()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            if req["op"] == "load":
                worker.load([tuple(m) for m in req["modules"]], req["entrypoints"])
                reply: dict[str, Any] = {"ok": True}
            elif req["op"] == "eval":
                reply = {"ok": True, "results": worker.evaluate(req.get("push"), req["objects"])}
            else:
                reply = {"ok": False, "error": f"unknown op {req.get('op')!r}"}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
