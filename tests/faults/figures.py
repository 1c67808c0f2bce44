"""What the fault tests measured: printed as it comes (visible with `pytest -s`) and, when
PUSHGATE_RELIABILITY_RESULTS names a file (bench/RESULTS.md), written to that file's Reliability
section at the end of the run. Only the lines between the section's markers are ever rewritten:
other tools own the other sections of the file.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from collections import Counter
from pathlib import Path

RESULTS_ENV = "PUSHGATE_RELIABILITY_RESULTS"
COMMAND = f"{RESULTS_ENV}=bench/RESULTS.md .venv/bin/python -m pytest tests/faults -s -q"
HEADING = "## Reliability: crashes, outages and hostile input (tests/faults)"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
_ROW = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<figures>.*) \| (?P<date>[^|]+?) \|$")


class Figures:
    def __init__(self) -> None:
        self.rows: dict[str, str] = {}
        self.outcomes: Counter[str] = Counter()
        self.failed: list[str] = []

    def record(self, name: str, text: str) -> None:
        self.rows[name] = text
        print(f"\n[reliability] {name}: {text}", flush=True)

    def section(self, old_rows: dict[str, tuple[str, str]], seconds: float) -> str:
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        rows = dict(old_rows)
        rows.update({name: (text.replace("|", "/"), today) for name, text in self.rows.items()})
        git = subprocess.run(["git", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
        result = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items())) or "nothing ran"
        lines = [
            START,
            "",
            f"- Command: `{COMMAND}`",
            f"- Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, {git}",
            f"- Last run: {today}: {result} in {seconds:.0f} s"
            + (f" (failed: {', '.join(self.failed)})" if self.failed else ""),
            "- Rows not measured by the last run keep the date of the run that measured them.",
            "",
            "| measurement | figures | date |",
            "|---|---|---|",
            *(f"| {name} | {text} | {date} |" for name, (text, date) in rows.items()),
            "",
            END,
        ]
        return "\n".join(lines)

    def write(self, path: Path, seconds: float) -> None:
        text = path.read_text() if path.exists() else "# Benchmark results\n"
        start, end = text.find(START), text.find(END)
        if start != -1 and end > start:
            old_rows = {m["name"]: (m["figures"], m["date"])
                        for line in text[start:end].splitlines() if (m := _ROW.match(line))
                        and m["name"] != "measurement"}
            new = text[:start] + self.section(old_rows, seconds) + text[end + len(END):]
        else:
            # The heading goes before the start marker, so that a tool replacing the section
            # above ours (up to the next `## ` heading) never swallows the marker.
            new = text.rstrip() + "\n\n" + HEADING + "\n" + self.section({}, seconds) + "\n"
        path.write_text(new)
