"""The `pushgate` console script: starts what a command is sure to wait for, then the CLI.

`pushgate validate` waits for the plan of its policies, compiled in a worker process, and then
for the embedded engine's worker to start (each ~0.15 s of Python and regopy imports). Started
here, before `pushgate.cli` and the gate are imported (~0.3 s on one core), they start on the
other core; started from the CLI, policy loading waited ~0.25 s for the compiler. Imports
nothing heavy itself.
"""

from __future__ import annotations

import os
import sys


def run() -> None:
    """Console-script entry point."""
    if sys.argv[1:2] != ["validate"]:
        from pushgate import cli

        cli.run()
        return
    from pushgate.gate import prestart

    prestart.start(engines=1)
    from pushgate import cli

    code = cli.main()
    # No interpreter teardown: it frees every parsed object of the tree one by one (~0.15 s
    # for 5,000 manifests). Nothing is left to do: the gate closed its engine and every
    # temporary directory; a prestarted worker not taken exits as its stdin closes.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = 120  # what Python exits with when it cannot flush at exit
    os._exit(code)
