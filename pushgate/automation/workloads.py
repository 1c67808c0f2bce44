"""Opted-in containers of a manifest file, and the in-place rewrite of their image fields.

Called by `scanner`. Pure: no I/O (bytes in, bytes out). A workload opts a container in with
annotations on its own metadata:

    pushgate.io/image-policy.<container>: "semver:>=1.0 <2.0"   # or alphabetical:asc, numerical:desc
    pushgate.io/image-filter.<container>: "^main-(?P<ts>[0-9]+)$"  # optional (RE2)
    pushgate.io/image-extract.<container>: "$ts"                 # optional, needs the filter
    pushgate.io/image-lock: "true"                               # the whole workload: never bumped

Workloads are Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods; their
`containers` and `initContainers` count. The file is never serialised again: only the image
scalar is replaced on its own line (comments, quoting, order and blank lines stay), and the result
is parsed again and must differ from the original in exactly those image fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pushgate.automation import errors, imageref, tagpolicy
from pushgate.core import manifests

PREFIX = "pushgate.io/"
POLICY, FILTER, EXTRACT = (PREFIX + "image-policy.", PREFIX + "image-filter.", PREFIX + "image-extract.")
LOCK = PREFIX + "image-lock"
POD_SPECS = {"Deployment": "spec.template.spec", "StatefulSet": "spec.template.spec",
             "DaemonSet": "spec.template.spec", "ReplicaSet": "spec.template.spec",
             "Job": "spec.template.spec", "CronJob": "spec.jobTemplate.spec.template.spec",
             "Pod": "spec"}
_LIST_FIELDS = ("initContainers", "containers")
_WINDOW = 3  # lines after the key's line where a value may sit (`image:` then the value below)


class RewriteError(errors.AutomationError):
    """The image field could not be replaced in place (an alias, a merge key, a multi-line scalar)."""


@dataclass(frozen=True)
class Target:
    """One opted-in container."""

    path: str
    ref: str  # "Deployment/shop/web"
    container: str
    image: str
    field: str  # "spec.template.spec.containers.0.image"
    line: int
    locked: bool
    policy: tagpolicy.TagPolicy | None  # None with a problem
    problem: str = ""


def find(path: str, data: bytes, limits: manifests.Limits | None = None) -> list[Target]:
    """Every opted-in container of the file's workloads (a file that does not parse has none:
    the gate reports it)."""
    loaded = manifests.load(path, data, limits or manifests.Limits())
    out: list[Target] = []
    for m in loaded.manifests:
        out.extend(_targets(m))
    return out


def _get(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def _targets(m: manifests.Manifest) -> list[Target]:
    spec_path = POD_SPECS.get(m.kind)
    meta = m.obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if spec_path is None or not isinstance(annotations, dict):
        return []
    wanted = {k[len(POLICY):] for k in annotations if isinstance(k, str) and k.startswith(POLICY)}
    if not wanted:
        return []
    locked = str(annotations.get(LOCK, "")).strip().lower() == "true"
    pod = _get(m.obj, spec_path)
    out: list[Target] = []
    seen: set[str] = set()
    for list_field in _LIST_FIELDS:
        items = pod.get(list_field) if isinstance(pod, dict) else None
        for i, c in enumerate(items if isinstance(items, list) else []):
            name = c.get("name") if isinstance(c, dict) else None
            if name not in wanted or not isinstance(name, str):
                continue
            seen.add(name)
            image = c.get("image")
            field = f"{spec_path}.{list_field}.{i}.image"
            policy, problem = None, ""
            try:
                policy = tagpolicy.parse(str(annotations[POLICY + name]),
                                         str(annotations.get(FILTER + name, "")),
                                         str(annotations.get(EXTRACT + name, "")))
            except errors.PolicyError as e:
                problem = str(e)
            if not isinstance(image, str) or imageref.parse(image) is None:
                policy, problem = None, f"image {image!r} is not an image reference"
            elif imageref.parse(image).digest:  # type: ignore[union-attr]
                policy, problem = None, "the image is pinned by digest: not rewritten"
            out.append(Target(m.path, m.ref, name, image if isinstance(image, str) else "", field,
                              m.line_of(field), locked, policy, problem))
    for name in sorted(wanted - seen):
        out.append(Target(m.path, m.ref, name, "", "", m.line, locked, None,
                          f"{POLICY}{name}: the workload has no container {name!r}"))
    return out


def rewrite(path: str, data: bytes, changes: list[tuple[Target, str]],
            limits: manifests.Limits | None = None) -> bytes:
    """The file with each target's image replaced on its own line; `RewriteError` when that cannot
    be done exactly."""
    text = data.decode("utf-8")
    lines = text.splitlines(keepends=True)
    for target, new in sorted(changes, key=lambda c: -c[0].line):
        lines = _replace(lines, target, new)
    out = "".join(lines).encode("utf-8")
    _verify(path, data, out, changes, limits or manifests.Limits())
    return out


_END = r"""(?=$|[\s"',}\]#])"""


def _replace(lines: list[str], target: Target, new: str) -> list[str]:
    old = re.escape(target.image)
    keyed = re.compile(r"""(\bimage["']?\s*:\s*["']?)""" + old + _END)
    alone = re.compile(r"""^(\s*(?:-\s+)?["']?)""" + old + r"""(["']?\s*(?:#.*)?$)""")
    start = max(target.line - 1, 0)
    for i in range(start, min(start + 1 + _WINDOW, len(lines))):
        line = lines[i]
        body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if body.endswith("\r"):
            body, newline = body[:-1], "\r" + newline
        for pattern in (keyed, alone):
            m = pattern.search(body)
            if m:
                replaced = body[:m.end(1)] + new + body[m.end(1) + len(target.image):]
                return [*lines[:i], replaced + newline, *lines[i + 1:]]
    raise RewriteError(f"{target.path}:{target.line} {target.ref} container {target.container}: "
                       f"image {target.image!r} not found on its line (an alias or a multi-line "
                       f"value?): not rewritten")


def _verify(path: str, before: bytes, after: bytes, changes: list[tuple[Target, str]],
            limits: manifests.Limits) -> None:
    old = manifests.load(path, before, limits)
    new = manifests.load(path, after, limits)
    expected = [m.obj for m in old.manifests]
    for target, image in changes:
        for obj in expected:
            same = manifests.Manifest(path, 0, 0, obj).ref == target.ref
            if same and _get(obj, target.field) == target.image:
                _set(obj, target.field, image)
                break
    if new.problems or [m.obj for m in new.manifests] != expected:
        raise RewriteError(f"{path}: rewriting the image fields in place would change more than "
                           f"them: not rewritten")


def _set(obj: dict[str, object], dotted: str, value: str) -> None:
    parts = dotted.split(".")
    cur: object = obj
    for part in parts[:-1]:
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]  # type: ignore[index]
    cur[parts[-1]] = value  # type: ignore[index]
