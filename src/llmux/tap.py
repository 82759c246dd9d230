# -*- test-case-name: tests.test_tap -*-
"""
The C{llmux} twistd plugin's options and service maker.

C{twistd -n llmux --config config.yaml --policy round_robin} and the C{llmux}
console script both land here. Every mistake in the options or the config is
reported as one line before the reactor starts.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.logger import ILogObserver
from twisted.python import usage

from . import __version__
from .config import Config, ConfigError, loadConfig
from .interfaces import IEvictionPolicy, ISwitchPolicy
from .logs import FORMATS, makeObserver, setVerbose
from .policies import (
    PolicyConflict,
    UnknownPolicy,
    buildEvictionPolicy,
    buildPolicy,
    findEvictionPolicies,
    findPolicies,
)

__all__ = ["LISTEN_BACKLOG", "Options", "makeService"]

#: Connections the kernel may queue for llmux to accept (it caps this at
#: net.core.somaxconn). Twisted's default, 50, overflows whenever a burst of
#: clients meets a busy moment, and each overflow costs its client a SYN
#: retransmission: 1, 3, 7 s.
LISTEN_BACKLOG = 1024


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a port (1 to 65535)")
    return port


class Options(usage.Options):
    """
    Command-line options of llmux.
    """

    synopsis = "[options]"
    longdesc = (
        "Multiplexes OpenAI-compatible model servers behind one port, waking"
        " the model each request names and putting the others to sleep."
    )
    optParameters = [
        [
            "config",
            "c",
            "config.yaml",
            "Configuration file (.yaml/.yml: YAML, else JSON).",
        ],
        [
            "port",
            "p",
            None,
            "Port to listen on, on all interfaces, with a listen backlog of"
            f" {LISTEN_BACKLOG} (overrides the config).",
            _port,
        ],
        [
            "listen",
            None,
            None,
            "Twisted endpoint to listen on, e.g."
            " tcp:3000:interface=127.0.0.1:backlog=1024 or"
            " unix:/run/llmux.sock:backlog=1024 (overrides --port; without"
            " backlog=, Twisted's default of 50 applies).",
        ],
        ["policy", None, "fifo", "Switch policy, by name (see --list-policies)."],
        [
            "log-format",
            None,
            "text",
            "Log as human-readable text, or as one JSON object per line (json).",
        ],
        ["log-file", None, None, "Write the log to this file instead of stdout."],
    ]
    optFlags = [
        [
            "verbose",
            "v",
            "Log debug detail: hook output, healthy alive checks, skipped switches.",
        ],
    ]

    def getSynopsis(self) -> str:
        """
        C{Usage: llmux [options]} when run as the C{llmux} console script,
        which hides the twistd command line it builds; twistd's own form
        under C{twistd llmux}.
        """
        if os.path.basename(sys.argv[0]) == "llmux":
            return f"Usage: llmux {self.synopsis}"
        return super().getSynopsis()

    config: Config
    policy: ISwitchPolicy
    eviction: IEvictionPolicy
    listen: str
    logObserver: ILogObserver | None

    def opt_version(self) -> None:
        """
        Print llmux's version and exit.
        """
        print(f"llmux {__version__.public()}")
        sys.exit(0)

    def opt_list_policies(self) -> None:
        """
        List the switch and eviction policies the plugin system finds, and
        exit.
        """
        try:
            groups: list[tuple[str, dict[str, Any]]] = [
                ("Switch policies (--policy NAME):", findPolicies()),
                (
                    "Eviction policies (eviction: NAME in the config):",
                    findEvictionPolicies(),
                ),
            ]
        except PolicyConflict as e:
            _fail(str(e))
        width = max(len(name) for _, found in groups for name in found)
        for index, (title, found) in enumerate(groups):
            if index:
                print()
            print(title)
            for name in sorted(found):
                print(f"  {name:<{width}}  {found[name].description}")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        # twistd prints its whole usage text before a usage error; a wrong
        # option deserves one line that says what is wrong.
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            _fail(f"{e} (see llmux --help)")

    def postOptions(self) -> None:
        setVerbose(bool(self["verbose"]))
        try:
            self.config = loadConfig(self["config"])
            self.policy = buildPolicy(self["policy"], self.config.policy)
        except ConfigError as e:
            _fail(str(e if e.source else e.withSource(self["config"])))
        except (UnknownPolicy, PolicyConflict) as e:
            _fail(str(e))
        try:
            self.eviction = buildEvictionPolicy(self.config.eviction)
        except (UnknownPolicy, PolicyConflict) as e:
            _fail(f"{self['config']}: eviction: {e}")
        self.listen = self._listenDescription()
        self.logObserver = self._logObserver()

    def _logObserver(self) -> ILogObserver | None:
        """
        The observer for --log-format/--log-file, or C{None} to leave the log
        to twistd (text on stdout in the foreground).
        """
        logFormat, path = self["log-format"], self["log-file"]
        if logFormat not in FORMATS:
            _fail(
                f"--log-format must be one of {', '.join(FORMATS)}, not {logFormat!r}"
            )
        if logFormat == "text" and path is None:
            return None
        try:
            stream = sys.stdout if path is None else open(path, "a", encoding="utf-8")
        except OSError as e:
            _fail(f"cannot open log file {path!r}: {e.strerror}")
        return makeObserver(logFormat, stream)

    def _listenDescription(self) -> str:
        if self["listen"] is not None:
            description: str = self["listen"]
        else:
            port = self.config.port if self["port"] is None else self["port"]
            description = f"tcp:{port}:backlog={LISTEN_BACKLOG}"
        _checkEndpoint(description)
        return description


def _checkEndpoint(description: str) -> None:
    """
    Parse an endpoint description now, so a bad one is an option error rather
    than a failure after start-up.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, description)
    except (ValueError, TypeError, IndexError, KeyError) as e:
        _fail(f"invalid listen endpoint {description!r}: {e}")


def _fail(message: str) -> Any:
    """
    Report an error as one line on stderr and exit non-zero.
    """
    sys.stderr.write(f"llmux: error: {message}\n")
    raise SystemExit(1)


def makeService(options: Options) -> IService:
    """
    Build the llmux service from parsed options.
    """
    from twisted.internet import reactor

    from .service import makeLlmuxService

    return makeLlmuxService(
        options.config,
        options.policy,
        options.listen,
        reactor,
        options.logObserver,
        tune=True,
        eviction=options.eviction,
        source=options["config"],
        policyName=options["policy"],
    )
