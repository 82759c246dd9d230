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
    """
    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["llmux", "--nodaemon", "--pidfile=", "llmux", *args]
    run()
