"""Fixtures of the fault tests: the figures they record (see `figures`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.figures import RESULTS_ENV, Figures

_FIGURES = Figures()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/faults/" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _FIGURES.outcomes[report.outcome] += 1
        if report.failed:
            _FIGURES.failed.append(report.nodeid.rsplit("::", 1)[-1])


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    started = time.monotonic()
    yield _FIGURES
    target = os.environ.get(RESULTS_ENV)
    if target:
        _FIGURES.write(Path(target), time.monotonic() - started)
