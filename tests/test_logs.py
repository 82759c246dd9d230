"""
Tests for L{llmux.logs}: the level filter that --verbose lowers.
"""

from __future__ import annotations

from twisted.logger import LogEvent, Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from llmux.logs import observer, setVerbose
from llmux.tap import Options

from .test_tap import writeConfig


class VerbosityTests(SynchronousTestCase):
    """
    llmux's debug events are dropped unless --verbose is given.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(setVerbose, False)
        self.log = Logger(namespace="llmux.test", observer=observer)

    def messages(self) -> list[str]:
        return [
            e["log_format"]
            for e in self.events
            if e.get("log_namespace") == "llmux.test"
        ]

    def test_defaultInfo(self) -> None:
        """
        By default info and above pass, debug does not.
        """
        self.log.debug("detail")
        self.log.info("news")
        self.log.warn("trouble")
        self.assertEqual(self.messages(), ["news", "trouble"])

    def test_verbose(self) -> None:
        """
        Verbose lets debug through; turning it off drops debug again.
        """
        setVerbose(True)
        self.log.debug("detail")
        setVerbose(False)
        self.log.debug("hidden")
        self.assertEqual(self.messages(), ["detail"])

    def test_verboseOption(self) -> None:
        """
        llmux -v turns on debug events; without it they stay off.
        """
        Options().parseOptions(
            ["-c", writeConfig(self), "-v", "--policy", "round_robin"]
        )
        self.log.debug("after -v")
        Options().parseOptions(["-c", writeConfig(self), "--policy", "round_robin"])
        self.log.debug("after no -v")
        self.assertEqual(self.messages(), ["after -v"])
