# -*- test-case-name: tests.test_logs -*-
"""
Where llmux's log events go: through one level filter, then to Twisted's
global log publisher (and so to whatever observers twistd or a test set up).

twistd's own observer writes every event it gets, debug included, so the
level is applied here, on the way out of llmux's loggers: each is a
C{Logger(observer=llmux.logs.observer)}. C{--verbose} lowers the level to
debug, which adds hook output and other detail.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

__all__ = ["observer", "setVerbose"]

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)

#: The observer llmux's loggers emit to.
observer = FilteringLogObserver(globalLogPublisher, [_levels])


def setVerbose(verbose: bool) -> None:
    """
    Let debug events through (C{True}) or only info and above (C{False}).
    """
    _levels.setLogLevelForNamespace("", LogLevel.debug if verbose else LogLevel.info)
