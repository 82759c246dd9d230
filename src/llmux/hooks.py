# -*- test-case-name: tests.test_hooks -*-
"""
Running a model's C{wake}, C{sleep}, C{alive} and C{unload} hooks as shell
processes.

Each hook runs as C{sh -c <script>} in the model's directory (the config
file's directory), with the inherited environment plus C{LLMUX_MODEL} (and,
with a declared capacity, C{LLMUX_PLACEMENT} and C{LLMUX_POOLS}), in a
session and process group of its own, so a hook that runs too long can be
killed together with everything it started.

How a hook ends
===============

Twisted reports a process as ended only once it has exited I{and} every pipe
to it is closed. A hook that starts a background process which keeps llmux's
stdout or stderr open, such as::

    vllm serve my-model &

therefore does not end when C{sh} exits: it ends when the background process
closes those pipes, or when the hook's timeout kills the whole process group
(background process included). A background process that escaped the group
(with C{setsid}) survives the timeout, but llmux then closes its ends of the
pipes, so the hook still ends. Start long-running servers with their output
redirected instead::

    nohup vllm serve my-model >server.log 2>&1 &
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from llmux.config import ModelConfig
from llmux.interfaces import HookResult, IHookRunner
from llmux.logs import observer

__all__ = ["HOOKS", "HookRunner"]

#: The hooks a model has (C{unload} is optional).
HOOKS = ("wake", "sleep", "alive", "unload")
#: The timeout each hook runs under: C{unload} frees memory, as C{sleep}
#: does, and shares its limit.
TIMEOUT_OF = {"wake": "wake", "sleep": "sleep", "alive": "alive", "unload": "sleep"}

#: The exit status reported when a hook could not be started at all, as
#: C{sh} does for a command it cannot find.
SPAWN_FAILED = 127

#: Run by C{sys.executable -I -S -c} with the directory and the script as
#: arguments: enter the directory, restore the signal dispositions Python
#: ignores (so C{sh} sees a normal SIGPIPE), start a new session (so the
#: hook's pid is also its process group id) and become C{/bin/sh -c script}.
#: C{os.setsid} is portable where C{setsid(1)} (util-linux) is not.
TRAMPOLINE = """\
import os, signal, sys
def fail(what, e):
    sys.stderr.write("llmux: %s: %s\\n" % (what, e.strerror or e))
    sys.stderr.flush()
    os._exit(127)
for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.chdir(sys.argv[1])
except OSError as e:
    fail("cannot enter hook directory %r" % sys.argv[1], e)
try:
    os.setsid()
    os.execv("/bin/sh", ["sh", "-c", sys.argv[2]])
except OSError as e:
    fail("cannot start /bin/sh", e)
"""


class _Tail:
    """
    The last C{limit} bytes of a stream, without keeping the rest.

    Hooks may be chatty (a server's start-up log, a progress bar), and only
    the end of their output explains a failure.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def write(self, data: bytes) -> None:
        """
        Append C{data}, dropping whole chunks that have fallen out of the tail.
        """
        if self._limit <= 0 or not data:
            return
        data = data[-self._limit :]
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def value(self) -> bytes:
        """
        The kept bytes: at most C{limit} of them.
        """
        return b"".join(self._chunks)[-self._limit :] if self._limit > 0 else b""


class _HookProtocol(ProcessProtocol):
    """
    One hook process: captures its output and kills its process group on
    timeout.

    @ivar ended: fires with C{(reason, timedOut)} once the process exited and
        its pipes closed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float | None,
        killGraceSecs: float,
        outputLimit: int,
    ) -> None:
        self.ended: Deferred[tuple[Failure, bool]] = Deferred()
        self.stdout = _Tail(outputLimit)
        self.stderr = _Tail(outputLimit)
        self.timedOut = False
        self._clock = clock
        self._timeout = timeout
        self._killGraceSecs = killGraceSecs
        self._pgid: int | None = None
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """
        Remember the process group (C{transport.pid} is cleared once the
        child is reaped, when a grandchild may still need killing), close
        stdin and start the timeout.
        """
        assert self.transport is not None
        self._pgid = self.transport.pid
        self.transport.closeStdin()
        if self._timeout is not None:
            self._timer = self._clock.callLater(self._timeout, self._expire)

    def outReceived(self, data: bytes) -> None:
        """
        Keep the tail of stdout.
        """
        self.stdout.write(data)

    def errReceived(self, data: bytes) -> None:
        """
        Keep the tail of stderr.
        """
        self.stderr.write(data)

    def _expire(self) -> None:
        """
        The hook ran too long: ask its whole group to stop, and insist after
        the grace period.
        """
        self.timedOut = True
        self._signal(signal.SIGTERM)
        self._timer = self._clock.callLater(self._killGraceSecs, self._kill)

    def _kill(self) -> None:
        """
        Kill the hook's process group, and close llmux's ends of its pipes.

        A process that left the group (it started a session of its own) but
        still holds the hook's stdout or stderr would otherwise keep the hook
        from ending at all: Twisted waits for every pipe to close.
        """
        self._timer = None
        self._signal(signal.SIGKILL)
        if self.transport is not None:
            self.transport.loseConnection()

    def _signal(self, signum: int) -> None:
        """
        Send C{signum} to the hook's process group.

        If the group does not exist (yet), the child may still be starting up
        and not have called C{setsid}: signal the child itself then.
        """
        if self._pgid is None:
            return
        try:
            os.killpg(self._pgid, signum)
        except ProcessLookupError:
            pid = self.transport.pid if self.transport is not None else None
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def processEnded(self, reason: Failure) -> None:
        """
        The hook exited and closed its pipes: stop the timers and report.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.ended.callback((reason, self.timedOut))


def _exitStatus(reason: Failure) -> tuple[int | None, int | None]:
    """
    The C{(exitCode, signal)} of an ended process, from C{processEnded}'s
    reason.
    """
    value = reason.value
    return getattr(value, "exitCode", None), getattr(value, "signal", None)


@implementer(IHookRunner)
@attrs.define
class HookRunner:
    """
    Runs hooks as C{sh -c <script>} processes, each in its own process group.

    The hook sees llmux's environment plus C{LLMUX_MODEL} (the model name is
    passed only as that value, never inserted into a command line) and runs
    in C{model.directory}, so C{./wake.sh} means the script next to the config
    file. Its stdin is closed; the last C{outputLimit} bytes of its stdout and
    stderr are kept.

    A hook is over when it has exited and closed its stdout and stderr (see
    the module docstring about background processes). If it outlives its
    timeout, its process group gets SIGTERM, then SIGKILL after
    C{killGraceSecs}, and it counts as failed.

    @ivar reactor: an L{IReactorProcess} and L{IReactorTime} provider.
    @ivar timeouts: seconds each hook (C{"wake"}, C{"sleep"}, C{"alive"}) may
        run; C{None} or a missing key means no limit. C{"unload"} runs under
        the C{"sleep"} limit.
    @ivar killGraceSecs: how long a timed-out hook has between SIGTERM and
        SIGKILL.
    @ivar outputLimit: how many bytes of each of stdout and stderr are kept.
    """

    log = Logger(observer=observer)

    #: Typed loosely: it must provide both IReactorProcess and IReactorTime.
    reactor: Any
    timeouts: Mapping[str, float | None] = attrs.field(factory=dict)
    killGraceSecs: float = 5.0
    outputLimit: int = 64 * 1024

    # IHookRunner says "object" to keep interfaces.py free of config imports.
    def run(  # type: ignore[override]
        self, model: ModelConfig, hook: str
    ) -> Deferred[HookResult]:
        """
        Run C{hook} of C{model}.

        @return: a L{Deferred} that fires with a L{HookResult} however the hook
            ended, including when it could not be started.
        @raise ValueError: if C{hook} is not a hook name.
        """
        if hook not in HOOKS:
            raise ValueError(f"unknown hook {hook!r} (expected one of {HOOKS})")
        script: str | None = getattr(model, hook)
        if script is None:
            raise ValueError(f"{model.name} has no {hook} hook")
        startedAt = self.reactor.seconds()
        protocol = _HookProtocol(
            self.reactor,
            self.timeouts.get(TIMEOUT_OF[hook]),
            self.killGraceSecs,
            self.outputLimit,
        )
        try:
            self._spawn(protocol, model, script)
        except Exception as e:
            result = HookResult(
                model=model.name,
                hook=hook,
                exitCode=SPAWN_FAILED,
                signal=None,
                timedOut=False,
                durationSecs=self.reactor.seconds() - startedAt,
                stderr=f"llmux: cannot start hook: {e}\n".encode(errors="replace"),
            )
            self._logResult(result)
            return succeed(result)

        def ended(outcome: tuple[Failure, bool]) -> HookResult:
            reason, timedOut = outcome
            exitCode, signum = _exitStatus(reason)
            result = HookResult(
                model=model.name,
                hook=hook,
                exitCode=exitCode,
                signal=signum,
                timedOut=timedOut,
                durationSecs=self.reactor.seconds() - startedAt,
                stdout=protocol.stdout.value(),
                stderr=protocol.stderr.value(),
            )
            self._logResult(result)
            return result

        return protocol.ended.addCallback(ended)

    def _spawn(self, protocol: _HookProtocol, model: ModelConfig, script: str) -> None:
        """
        Start the hook process through the L{TRAMPOLINE}, which enters the
        directory and the new session before becoming C{sh}.

        Changing directory in the child (rather than with C{spawnProcess}'s
        C{path}) reports a missing directory as a hook failure and lets
        Twisted use C{posix_spawn}.
        """
        env = dict(os.environ)
        env.update(model.hookEnvironment())
        reactor: IReactorProcess = self.reactor
        reactor.spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, "-I", "-S", "-c", TRAMPOLINE, model.directory, script],
            env=env,
        )

    def _logResult(self, result: HookResult) -> None:
        """
        Emit C{hook_completed} or C{hook_failed}, and the output tails at
        debug level.
        """
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        if stdout or stderr:
            self.log.debug(
                "{model}: {hook} hook stdout:\n{stdout}\nstderr:\n{stderr}",
                event="hook_output",
                model=result.model,
                hook=result.hook,
                stdout=stdout,
                stderr=stderr,
            )
        if result.succeeded:
            # A healthy model's alive hook succeeds every alive_interval_secs:
            # worth seeing with --verbose, not in every log.
            self.log.emit(
                LogLevel.debug if result.hook == "alive" else LogLevel.info,
                "{model}: {hook} hook completed in {duration_secs:.2f}s",
                event="hook_completed",
                model=result.model,
                hook=result.hook,
                duration_secs=result.durationSecs,
            )
            return
        # An alive hook that exits non-zero has answered "not alive", which
        # is routine for a sleeping model; only its timeouts are trouble.
        answered = result.hook == "alive" and not result.timedOut
        self.log.emit(
            LogLevel.info if answered else LogLevel.warn,
            "{model}: {hook} hook failed after {duration_secs:.2f}s: {reason}",
            event="hook_failed",
            model=result.model,
            hook=result.hook,
            exit_code=result.exitCode,
            signal=result.signal,
            timed_out=result.timedOut,
            duration_secs=result.durationSecs,
            stderr=stderr,
            reason=result.describeFailure(),
        )
