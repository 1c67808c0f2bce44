"""Image references: `[registry[:port]/]path[:tag][@digest]`, read as Docker and containerd do.

Called by `scanner` (which registry and repository to ask) and `workloads` (the new image text).
Pure: no I/O. The first path component is a registry when it holds a `.` or a `:` or is
`localhost`; otherwise the image is on Docker Hub (`docker.io`, API host `registry-1.docker.io`),
and a one-component path is under `library/` there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class ImageRef:
    name: str  # as written, without tag and digest: "nginx", "127.0.0.1:5000/shop/web"
    registry: str  # "docker.io", "127.0.0.1:5000"
    repository: str  # the path the registry knows: "library/nginx", "shop/web"
    tag: str  # "" when the reference names none
    digest: str  # "" when the reference names none

    def with_tag(self, tag: str) -> str:
        return f"{self.name}:{tag}"


def parse(image: str) -> ImageRef | None:
    """The reference, or None when the text is not one."""
    rest, _, digest = image.partition("@")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            return None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
        if "/" not in path:
            path = "library/" + path
    if not _PATH.match(path):
        return None
    return ImageRef(rest, registry, path, tag, digest)


def is_tag(text: str) -> bool:
    return bool(_TAG.match(text))
