# -*- test-case-name: tests.test_hooks_process -*-
"""
Backend processes llmux owns (C{command:}, SPEC section 10).

Each runs in a session and process group of its own, started the way hooks
are (L{llmux.hooks.shell.spawnInGroup}), with its output logged line by line
under the model's name. llmux learns of its exit as the kernel reports it:
an exit llmux did not ask for is handed to C{onExit} at once, so the model
is marked dead instead of answering 502 until a health check notices.
Stopping sends SIGTERM to the whole group, then SIGKILL after the model's
C{stop_timeout_secs}: nothing the server started is left behind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from llmux.config import ModelConfig
from llmux.hookconfig import ProcessConfig
from llmux.interfaces import HookResult
from llmux.logs import observer

from .http import callStep, stepLimit
from .shell import Tail, exitStatus, signalGroup, spawnInGroup

__all__ = ["ManagedProcesses"]

#: Seconds between two readiness checks of a starting process.
READY_INTERVAL_SECS = 0.25
#: Seconds one readiness check may take.
READY_CHECK_SECS = 5.0
#: The longest output line logged whole; longer ones are cut.
LINE_LIMIT = 4096
#: How much of its last output a process's failure quotes.
TAIL_BYTES = 2048

#: Where the servers' output goes: a namespace of its own, so it can be
#: filtered apart from llmux's own events.
_output = Logger(observer=observer, namespace="llmux.backend")


class _ManagedProtocol(ProcessProtocol):
    """
    One backend process: logs its output line by line and reports its end.

    @ivar ended: fires once it has exited and its pipes are closed.
    @ivar reason: then, how it ended.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.pgid: int | None = None
        self.tail = Tail(TAIL_BYTES)
        self._partial = {"stdout": b"", "stderr": b""}

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pgid = self.transport.pid
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._lines("stdout", data)

    def errReceived(self, data: bytes) -> None:
        self._lines("stderr", data)

    def _lines(self, stream: str, data: bytes) -> None:
        """
        Log each complete line; keep at most L{LINE_LIMIT} bytes of an
        unfinished one (a progress bar without newlines must not grow
        without bound).
        """
        self.tail.write(data)
        buffered = self._partial[stream] + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > LINE_LIMIT:
            lines.append(rest[:LINE_LIMIT])
            rest = b""
        self._partial[stream] = rest
        for line in lines:
            self._emit(stream, line)

    def _emit(self, stream: str, line: bytes) -> None:
        text = line[:LINE_LIMIT].decode("utf-8", "replace").rstrip("\r")
        if text:
            _output.info(
                "{model}: {line}",
                event="backend_output",
                model=self.model,
                stream=stream,
                line=text,
            )

    def processEnded(self, reason: Failure) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._emit(stream, rest)
        self.reason = reason
        self.ended.callback(None)

    def describeEnd(self) -> str:
        """
        How it ended, with its last line of output: C{"exit code 1: error:
        no such model"}.
        """
        assert self.reason is not None
        exitCode, signum = exitStatus(self.reason)
        how = f"signal {signum}" if signum is not None else f"exit code {exitCode}"
        lines = self.tail.value().decode("utf-8", "replace").strip().splitlines()
        return f"{how}: {lines[-1].strip()}" if lines else how

    def signal(self, signum: int) -> None:
        """
        Send C{signum} to its whole process group.
        """
        if self.pgid is not None:
            signalGroup(self.pgid, self.pgid, signum)


class _Running:
    """
    A process llmux started, and what it expects of it.
    """

    def __init__(self, protocol: _ManagedProtocol, config: ProcessConfig) -> None:
        self.protocol = protocol
        self.config = config
        #: Its end is expected: llmux is starting or stopping it.
        self.expected = True


class ManagedProcesses:
    """
    The backend processes of the models that have a C{command}, by model.

    @ivar onExit: called with the model and a reason when a process that
        was up exits without being asked to.
    """

    log = Logger(observer=observer)

    def __init__(
        self,
        reactor: Any,
        client: HTTPClient,
        onExit: Callable[[str, str], object] | None = None,
    ) -> None:
        """
        @param reactor: an L{IReactorProcess} and L{IReactorTime} provider.
        @param client: makes the readiness checks.
        """
        self._reactor = reactor
        self._client = client
        self.onExit = onExit
        self._running: dict[str, _Running] = {}

    def running(self, model: str) -> bool:
        """
        Whether C{model}'s process is running.
        """
        return model in self._running

    def start(
        self, model: ModelConfig, hook: str, timeout: float | None
    ) -> Deferred[HookResult]:
        """
        Start C{model}'s process, unless it runs, and wait until its C{ready}
        check answers, within C{timeout}. A process that is not ready in
        time is stopped.
        """
        return Deferred.fromCoroutine(self._start(model, hook, timeout))

    async def _start(
        self, model: ModelConfig, hook: str, timeout: float | None
    ) -> HookResult:
        assert model.process is not None
        started = self._reactor.seconds()
        running = self._running.get(model.name)
        if running is None:
            taken = await self._taken(model)
            if taken is not None:
                return self._result(model, hook, started, taken)
            try:
                running = self._spawn(model, model.process)
            except Exception as e:
                return self._result(model, hook, started, f"cannot start: {e}")
        running.expected = True
        error, timedOut = await self._untilReady(model, running, started, timeout)
        if error is None:
            running.expected = False
            return self._result(model, hook, started)
        await self._stop(model.name)
        return self._result(model, hook, started, error, timedOut)

    async def _taken(self, model: ModelConfig) -> str | None:
        """
        Why C{model}'s process must not be started: another server already
        answers its C{ready} check on its port (one llmux did not start, or
        left behind). Its own server could not listen there, and the check
        would be answered by the wrong one.
        """
        assert model.process is not None
        ready = model.process.ready
        client, clock = self._client, self._reactor
        if await callStep(client, clock, ready, model.port, READY_CHECK_SECS):
            return None
        return (
            f"another server already answers {ready.describe()} on port"
            f" {model.port}: stop it, or let llmux adopt it by removing command"
        )

    def _spawn(self, model: ModelConfig, config: ProcessConfig) -> _Running:
        protocol = _ManagedProtocol(model.name)
        env = dict(os.environ)
        env.update(config.env)
        env.update(model.hookEnvironment())
        spawnInGroup(
            self._reactor,
            protocol,
            config.cwd,
            config.argv,
            env,
            dieWithParentAfter=config.stop_timeout_secs,
        )
        running = _Running(protocol, config)
        self._running[model.name] = running
        protocol.ended.addCallback(self._ended, model.name, running)
        self.log.info(
            "{model}: started {command} (pid {pid})",
            event="backend_started",
            model=model.name,
            command=config.commandLine,
            pid=protocol.pgid,
        )
        return running

    async def _untilReady(
        self,
        model: ModelConfig,
        running: _Running,
        started: float,
        timeout: float | None,
    ) -> tuple[str | None, bool]:
        """
        Poll the C{ready} check until it answers, the process ends or the
        time is up.

        @return: C{(None, False)} once ready, else why not and whether it
            was for lack of time.
        """
        ready = running.config.ready
        lastError = "no answer yet"
        while True:
            if running.protocol.reason is not None:
                end = running.protocol.describeEnd()
                return f"exited before it was ready ({end})", False
            left = self._left(started, timeout)
            if left is not None and left <= 0:
                why = f"{ready.describe()}: {lastError}"
                return f"not ready after {timeout:g}s ({why})", True
            limit = min(
                t for t in (READY_CHECK_SECS, ready.timeoutSecs, left) if t is not None
            )
            client, clock = self._client, self._reactor
            error = await callStep(client, clock, ready, model.port, limit)
            if error is None:
                return None, False
            lastError = error
            await deferLater(self._reactor, READY_INTERVAL_SECS)

    def _left(self, started: float, timeout: float | None) -> float | None:
        """
        Seconds left of C{timeout} from C{started}; C{None}: no limit.
        """
        if timeout is None:
            return None
        return timeout - (self._reactor.seconds() - started)

    def _ended(self, _: None, model: str, running: _Running) -> None:
        if self._running.get(model) is running:
            del self._running[model]
        if running.expected:
            return
        how = running.protocol.describeEnd()
        self.log.warn(
            "{model}: backend process exited ({how})",
            event="backend_exited",
            model=model,
            how=how,
        )
        if self.onExit is not None:
            self.onExit(model, f"exited ({how})")

    def stop(self, model: ModelConfig, hook: str) -> Deferred[HookResult]:
        """
        Stop C{model}'s process, if it runs: SIGTERM to its group, SIGKILL
        after its C{stop_timeout_secs}.
        """
        started = self._reactor.seconds()
        return self._stop(model.name).addCallback(
            lambda _: self._result(model, hook, started)
        )

    def _stop(self, model: str) -> Deferred[None]:
        running = self._running.get(model)
        if running is None:
            return succeed(None)
        running.expected = True
        protocol = running.protocol
        protocol.signal(signal.SIGTERM)
        kill = self._reactor.callLater(
            running.config.stop_timeout_secs, self._kill, protocol
        )
        stopped: Deferred[None] = Deferred()

        def ended(_: None) -> None:
            if kill.active():
                kill.cancel()
            stopped.callback(None)

        protocol.ended.addCallback(ended)
        return stopped

    def _kill(self, protocol: _ManagedProtocol) -> None:
        """
        The process outlived its C{stop_timeout_secs}: kill its group, and
        stop waiting for pipes a process outside the group may hold.
        """
        protocol.signal(signal.SIGKILL)
        if protocol.transport is not None:
            protocol.transport.loseConnection()

    def check(
        self, model: ModelConfig, hook: str, timeout: float | None
    ) -> Deferred[HookResult]:
        """
        Whether C{model}'s process runs and its C{ready} check answers.
        """
        return Deferred.fromCoroutine(self._check(model, hook, timeout))

    async def _check(
        self, model: ModelConfig, hook: str, timeout: float | None
    ) -> HookResult:
        assert model.process is not None
        started = self._reactor.seconds()
        if not self.running(model.name):
            return self._result(model, hook, started, "backend process is not running")
        ready = model.process.ready
        limit = stepLimit(ready, timeout, 0.0)
        error = await callStep(self._client, self._reactor, ready, model.port, limit)
        if error is not None:
            error = f"{ready.describe()}: {error}"
        return self._result(model, hook, started, error)

    def stopAll(self) -> Deferred[Any]:
        """
        Stop every process (llmux is shutting down).
        """
        return gatherResults([self._stop(name) for name in list(self._running)])

    def _result(
        self,
        model: ModelConfig,
        hook: str,
        started: float,
        error: str | None = None,
        timedOut: bool = False,
    ) -> HookResult:
        duration = self._reactor.seconds() - started
        return HookResult.ranNoProcess(
            model.name, hook, duration, error or "", timedOut=timedOut
        )
