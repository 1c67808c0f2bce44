"""The `opa` command-line tool: `opa check` and `opa test` over a policy directory.

Called by `pushgate.gate.policycheck` when a policy commit is pushed: OPA's own compiler must
accept every module (tests included), and the repository's `_test.rego` tests must pass with
`opa test` semantics, which only the real binary has (regopy cannot run tests: `with input as`
crashes it). The binary is found like helm: `PUSHGATE_OPA`, then the pinned one that
`scripts/tools.sh` builds into the tool cache (`$PUSHGATE_CACHE/bin/opa-<OPA_VERSION>`), then
`opa` next to the kustomize binary in use (a container image ships them side by side), then
`opa` on PATH. Each run is bounded in time and output, with a minimal environment; the results
are read from OPA's JSON output and become Violations naming the file and line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

from pushgate.build import tools
from pushgate.core import violations as pv

MAX_OUTPUT = 8 * 1024 * 1024
MAX_PROBLEMS = 200
_LOCATED = re.compile(r"(?:^|[\s:;(])([\w./-]+\.(?:rego|ya?ml|json)):(\d+)(?::\d+)?:?\s*")


class OpaUnavailable(Exception):
    """`opa` is missing, timed out or answered something unreadable: the check cannot decide."""


def find(kustomize_bin: str | None = None) -> str | None:
    return tools.default_opa(kustomize_bin) or shutil.which("opa")


def missing_message() -> str:
    version = tools.pinned_version("OPA_VERSION") or "1.x"
    return (f"the opa binary (OPA {version}) is needed to check a policy push and was not found: "
            f"set PUSHGATE_OPA, put opa on the server's PATH, or build the pinned one with "
            f"'bash scripts/tools.sh path opa'")


def located(message: str, rule: str, default_path: str) -> pv.Violation:
    """An error message as a Violation at the first `file:line` it names, if any ("1 error
    occurred: a.rego:2: rego_type_error: ..." -> a.rego:2 [rule] 1 error occurred: rego_...)."""
    m = _LOCATED.search(message)
    if m is None:
        return pv.error(default_path, 0, "", rule, message)
    rest = (message[:m.start(1)].rstrip(" :;(") + " " + message[m.end():]).strip()
    return pv.error(m.group(1), int(m.group(2)), "", rule, rest or message)


def run(opa: str, args: list[str], cwd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`opa ARGS` in `cwd`, bounded in time and output, with a minimal environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": cwd, "LC_ALL": "C"}
    try:
        res = subprocess.run([opa, *args], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=max(1.0, timeout), check=False)
    except subprocess.TimeoutExpired as e:
        raise OpaUnavailable(f"opa {args[0]} took more than {timeout:.0f}s") from e
    except OSError as e:
        raise OpaUnavailable(f"cannot run {opa}: {e.strerror}") from e
    if len(res.stdout) > MAX_OUTPUT or len(res.stderr) > MAX_OUTPUT:
        raise OpaUnavailable(f"opa {args[0]} printed more than {MAX_OUTPUT} bytes")
    return res


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise OpaUnavailable(f"{what}: unreadable output: {text.strip()[:200]}") from e


def _error(err: dict[str, Any], rule: str) -> pv.Violation:
    loc = err.get("location") or {}
    code = str(err.get("code") or "")
    msg = str(err.get("message") or "error")
    return pv.error(str(loc.get("file") or ""), int(loc.get("row") or 0), "", rule,
                    f"{code}: {msg}" if code else msg)


def check(opa: str, directory: str, timeout: float) -> list[pv.Violation]:
    """`opa check` of every module under `directory` (run from there, so files are named
    relative to it): one Violation per compile error, none when OPA accepts them all."""
    res = run(opa, ["check", "--format", "json", "."], directory, timeout)
    if res.returncode == 0:
        return []
    doc = _json(res.stderr.strip() or res.stdout.strip(), "opa check")
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors:
        raise OpaUnavailable(f"opa check failed (exit {res.returncode}) without naming an error")
    return [_error(e, "opa-check") for e in errors[:MAX_PROBLEMS] if isinstance(e, dict)]


def test(opa: str, directory: str, timeout: float) -> tuple[int, list[pv.Violation]]:
    """`opa test` of `directory`: (tests run, one Violation per failing or erroring test)."""
    args = ["test", "--format", "json", "--exit-zero-on-skipped", "--timeout", f"{max(1, int(timeout))}s"]
    res = run(opa, [*args, "."], directory, timeout)
    out = res.stdout.strip()
    if res.returncode not in (0, 2) or not out.startswith("["):
        # exit 1: the tests did not compile; OPA says why on stderr, in one line per error
        text = (res.stderr.strip() or out)[:2000]
        lines = [s for s in text.splitlines() if s.strip()] or [f"opa test failed (exit {res.returncode})"]
        return 0, [located(line, "opa-test", ".") for line in lines[:MAX_PROBLEMS]]
    results = _json(out, "opa test")
    if not isinstance(results, list):
        raise OpaUnavailable("opa test: expected a list of results")
    failed: list[pv.Violation] = []
    for r in results:
        if not isinstance(r, dict) or not (r.get("fail") or r.get("error")):
            continue
        loc = r.get("location") or {}
        name = f"{r.get('package', '')}.{r.get('name', '')}"
        err = r.get("error")
        why = (f"test {name} errored: {err.get('message', err) if isinstance(err, dict) else err}"
               if err else f"test {name} failed")
        failed.append(pv.error(str(loc.get("file") or ""), int(loc.get("row") or 0), "", "opa-test", why))
    if res.returncode == 2 and not failed:
        raise OpaUnavailable("opa test reported failures without naming a failing test")
    return len(results), failed[:MAX_PROBLEMS]
