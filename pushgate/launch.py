"""The `pushgate` console script: starts what a command is sure to wait for, then the CLI.

`pushgate validate` waits for the plan of its policies, compiled in a worker process, and then
for the embedded engine's worker to start (each ~0.15 s of Python and regopy imports). Started
here, before `pushgate.cli` and the gate are imported (~0.3 s on one core), they start on the
other core; started from the CLI, policy loading waited ~0.25 s for the compiler. The compiler
is also sent the policy directory the command names (or the default one) at once, so that the
plan is compiled during those imports too (see `prestart`). Imports nothing heavy itself.
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
    guess = policies_guess(sys.argv[2:])
    if guess:
        prestart.plan_ahead(guess)
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


def policies_guess(argv: list[str]) -> str | None:
    """The policy directory `pushgate validate <argv>` will most likely load, read without the
    CLI's parser (which imports the configuration); None when the server's active policy
    commit may be the one (--data-dir). A wrong guess only costs the compile it started."""
    guess = os.environ.get("PUSHGATE_POLICIES")
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--data-dir" or arg.startswith("--data-dir="):
            return None
        if arg == "--policies" and i + 1 < len(argv):
            guess = argv[i + 1]
        elif arg.startswith("--policies="):
            guess = arg.partition("=")[2]
    if guess:
        return guess
    from gitserver.settings import default_policies_dir

    return default_policies_dir()
