"""Locates the pinned tools built by scripts/tools.sh, building any that is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "scripts" / "tools.versions").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def path(name: str) -> str:
    """Absolute path of a pinned tool; scripts/tools.sh builds it once if the cache lacks it."""
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools.sh"), "path", name],
        capture_output=True, text=True, check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"cannot get tool {name}: {res.stderr.strip()[-2000:]}")
    return res.stdout.strip().splitlines()[-1]
