# -*- test-case-name: tests.test_tap -*-
"""
The C{llmux} console script: C{twistd -n llmux} under a shorter name.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """
    Run llmux in the foreground with the given arguments (default: the
    command line), exactly as C{twistd --nodaemon --pidfile= llmux ...} would.

    No pidfile is written: a foreground process run by a supervisor or a
    terminal has no use for one, and a stale one would block the next start.

    C{llmux simulate ...} runs the policy simulator instead
    (L{llmux.simulation.cli}) and exits with its status.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["simulate"]:
        from .simulation.cli import main as simulate

        raise SystemExit(simulate(args[1:]))

    from twisted.scripts.twistd import run

    sys.argv = ["llmux", "--nodaemon", "--pidfile=", "llmux", *args]
    run()
