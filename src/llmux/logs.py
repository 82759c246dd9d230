# -*- test-case-name: tests.test_logs -*-
"""
Where llmux's log events go, and in what form.

Every llmux logger is a C{Logger(observer=llmux.logs.observer)}: its events
pass one level filter (info, or debug with C{--verbose}) before they reach
Twisted's global log publisher. twistd's own observer writes every event it
gets, debug included, so the level is applied here, on the way out.

Events that matter to operators carry an C{event} field (C{switch_started},
C{model_activated}, C{hook_failed}, ...) plus the fields that describe them.
L{JSONLinesObserver} writes each event as one JSON object per line, with
those fields at the top level, so C{jq} and log shippers take them as they
are.
"""

from __future__ import annotations

import json
from typing import IO, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from zope.interface import implementer

__all__ = [
    "JSONLinesObserver",
    "addressText",
    "eventAsDict",
    "makeObserver",
    "observer",
    "setVerbose",
]

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)

#: The observer llmux's loggers emit to.
observer = FilteringLogObserver(globalLogPublisher, [_levels])

#: The log formats C{--log-format} accepts.
FORMATS = ("text", "json")


def setVerbose(verbose: bool) -> None:
    """
    Let debug events through (C{True}) or only info and above (C{False}).
    """
    _levels.setLogLevelForNamespace("", LogLevel.debug if verbose else LogLevel.info)


def addressText(address: object) -> str:
    """
    An address as a log line shows it: C{host:port} for TCP, C{str()} of
    anything else (a UNIX socket's path, say).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return f"{address.host}:{address.port}"
    return str(address)


def eventAsDict(event: LogEvent) -> dict[str, Any]:
    """
    A log event as flat JSON-able data: time, level, namespace, the
    formatted message, a traceback if it carries a failure, and every field
    of its own (those not starting with C{log_}).
    """
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if not key.startswith("log_") and key not in record:
            record[key] = value
    return record


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event as one line of JSON (no RFC 7464 record separators,
    unlike L{twisted.logger.jsonFileLogObserver}, so plain C{jq} reads it).
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: LogEvent) -> None:
        line = json.dumps(eventAsDict(event), default=str)
        self._stream.write(line + "\n")
        self._stream.flush()


def makeObserver(logFormat: str, stream: IO[str]) -> ILogObserver:
    """
    The observer that writes llmux's log to C{stream} in C{logFormat}
    (C{"text"} or C{"json"}).
    """
    if logFormat == "json":
        return JSONLinesObserver(stream)
    return textFileLogObserver(stream)
