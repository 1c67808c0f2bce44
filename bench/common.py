"""What every benchmark shares: arguments, timing, statistics, the machine, bench/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
PYTHON = ".venv/bin/python"
T = TypeVar("T")


def parser(name: str, doc: str | None, size: int, repeats: int) -> argparse.ArgumentParser:
    """The benchmark's arguments; every benchmark asks for them first, so the machine's speed at
    its start is taken here (once per process)."""
    global _speed_at_start
    if _speed_at_start is None:
        _speed_at_start = cpu_speed()
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=(doc or "").split("\n\n")[0])
    p.add_argument("--size", type=int, default=size, help=f"number of files/manifests (default {size})")
    p.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats (default {repeats})")
    p.add_argument("--results", default=str(RESULTS),
                   help="markdown file whose section to replace ('-' for none)")
    p.add_argument("--workdir", default=None, help="keep the work files here (default: a temp dir)")
    return p


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """The exact command, as run from the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([PYTHON, "-m", f"bench.{name}", *(shlex.quote(a) for a in args)])


@dataclass
class Timed:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def run_timed(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 3600) -> Timed:
    """Wall time of one whole process (start-up included)."""
    t0 = time.perf_counter()
    res = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    return Timed(time.perf_counter() - t0, res.returncode, res.stdout, res.stderr)


def in_child(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a fresh Python process (spawn), its result returned. pushgate's app sets
    process-wide state when created (the metrics dir in os.environ, prometheus' value class), which
    must not outlive a benchmark's temp dir in the caller (pytest runs several in one process)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else "?"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_speed() -> float:
    """Seconds this process takes for a fixed piece of pure-Python work (best of three, 0.1-0.2 s
    each on an idle core): the same code measures up to 1.5x slower on this kind of shared
    machine from one hour to the next, so each section records it at its start and end, and
    runs are compared by it, not by the clock alone."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - start)
    return best


_speed_at_start: float | None = None  # taken by parser(), not at import (tests import benchmarks)


def machine() -> str:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return (f"nproc {os.cpu_count()}, CPU {cpu_model()}, "
            f"Python {platform.python_version()}, {git}, {platform.system()} {platform.release()}")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (also readable on a terminal)."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.3f}"
    return str(c)


def code_state() -> str:
    """The commit measured, and which product files differ from it (new or changed, not committed)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False).stdout.rstrip("\n")

    head = git("rev-parse", "--short=12", "HEAD").strip() or "?"
    product = ("pushgate/", "gitserver/", "reconciler/", "policies/", "pyproject.toml")
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
               if line[3:].startswith(product)]
    return f"HEAD {head}" + (f", uncommitted changes in {', '.join(changed)}" if changed else ", clean")


_CODE_AT_START = code_state()  # when the benchmark's process imported this module


def _code_line() -> str:
    """The code measured; both states when it changed while the benchmark ran."""
    now_state = code_state()
    if now_state == _CODE_AT_START:
        return now_state
    return f"{_CODE_AT_START} at the start, {now_state} at the end (changed during the run)"


def section(name: str, title: str, command: str, body: str, started_load: str) -> str:
    start = _speed_at_start if _speed_at_start is not None else cpu_speed()
    return (f"## {name}: {title}\n\n"
            f"- Command: `{command}`\n"
            f"- Machine: {machine()}\n"
            f"- Code: {_code_line()}\n"
            f"- Date: {now()}; load average at start {started_load}, at end {load_average()}\n"
            f"- CPU speed: a fixed pure-Python loop took {start:.3f} s at the start, "
            f"{cpu_speed():.3f} s at the end (lower is faster; see bench.common.cpu_speed)\n\n"
            f"{body.rstrip()}\n")


def write_section(path: str, name: str, text: str) -> None:
    """Replace (or append) the `## <name>:` section of the results file."""
    if path == "-":
        return
    p = Path(path)
    old = p.read_text() if p.exists() else (
        "# Benchmark results\n\nEach section is written by the benchmark it names "
        "(`.venv/bin/python -m bench.<name>`); rerun one to replace its section.\n")
    pattern = re.compile(rf"^## {re.escape(name)}:.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text.rstrip() + "\n\n", old, count=1)
    else:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    p.write_text(new.rstrip() + "\n")


def verdict(value: float, target: float, *, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "MET" if ok else "MISSED"


def profile_lines(raw: str, *, keep_builtins: bool = False) -> str:
    """A pstats print-out cut to its table rows, paths shortened to the repo or the package."""
    def short(line: str) -> str:
        return re.sub(r"\S*/(site-packages|lib/python3\.\d+)/", "", line.replace(str(ROOT) + "/", ""))

    return "\n".join(short(line.rstrip()) for line in raw.splitlines()
                     if (line.strip() and "/" in line) or "ncalls" in line
                     or (keep_builtins and "{" in line))
