# -*- test-case-name: tests.test_hooks -*-
"""
Running a hook that is a shell script, and starting any process the way
hooks start (L{spawnInGroup}).

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
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from llmux.config import ModelConfig
from llmux.interfaces import HookResult

__all__ = [
    "SPAWN_FAILED",
    "Tail",
    "exitStatus",
    "runScript",
    "signalGroup",
    "spawnInGroup",
]

#: The exit status reported when a hook could not be started at all, as
#: C{sh} does for a command it cannot find.
SPAWN_FAILED = 127

#: Run by C{sys.executable -I -S -c} with the directory, whether the process
#: must die with llmux (C{"1"}) and the command's words as arguments: enter
#: the directory, restore the signal dispositions Python ignores (so C{sh}
#: sees a normal SIGPIPE), start a new session (so the process's pid is also
#: its process group id) and become the command (C{/bin/sh -c script} for a
#: hook). C{os.setsid} is portable where C{setsid(1)} (util-linux) is not.
#:
#: A process that must die with llmux (on Linux) stays instead as the leader
#: of its group and runs the command as its child. It ignores the SIGTERM
#: llmux sends the group (that is for the server), exits as its child does,
#: and if llmux dies first (the kernel sends it SIGHUP), sends SIGTERM to the
#: whole group, then SIGKILL after C{stop_timeout_secs}: the server's own
#: workers, or a server a shell command started, die too.
TRAMPOLINE = """\
import os, signal, sys
def fail(what, e):
    sys.stderr.write("llmux: %s: %s\\n" % (what, e.strerror or e))
    sys.stderr.flush()
    os._exit(127)
for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
directory, grace, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
try:
    os.chdir(directory)
except OSError as e:
    fail("cannot enter hook directory %r" % directory, e)
try:
    os.setsid()
except OSError as e:
    fail("cannot start a session", e)
if grace > 0 and sys.platform.startswith("linux") and os.fork() != 0:
    import ctypes
    def orphaned(signum, frame):
        os.killpg(0, signal.SIGTERM)
        signal.signal(signal.SIGALRM, lambda s, f: os.killpg(0, signal.SIGKILL))
        signal.setitimer(signal.ITIMER_REAL, grace)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, orphaned)
    ctypes.CDLL(None).prctl(1, signal.SIGHUP)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        orphaned(None, None)
    code = os.waitstatus_to_exitcode(os.waitpid(-1, 0)[1])
    if code < 0:
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)
try:
    os.execvp(argv[0], argv)
except OSError as e:
    fail("cannot start %s" % argv[0], e)
"""


class Tail:
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
        self.stdout = Tail(outputLimit)
        self.stderr = Tail(outputLimit)
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
        """
        if self._pgid is not None:
            pid = self.transport.pid if self.transport is not None else None
            signalGroup(self._pgid, pid, signum)

    def processEnded(self, reason: Failure) -> None:
        """
        The hook exited and closed its pipes: stop the timers and report.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.ended.callback((reason, self.timedOut))


def exitStatus(reason: Failure) -> tuple[int | None, int | None]:
    """
    The C{(exitCode, signal)} of an ended process, from C{processEnded}'s
    reason.
    """
    value = reason.value
    return getattr(value, "exitCode", None), getattr(value, "signal", None)


def signalGroup(pgid: int, pid: int | None, signum: int) -> None:
    """
    Send C{signum} to the process group C{pgid}.

    If the group does not exist (yet), the child may still be starting up
    and not have called C{setsid}: signal the child C{pid} itself then.
    """
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def spawnInGroup(
    reactor: IReactorProcess,
    protocol: ProcessProtocol,
    directory: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    dieWithParentAfter: float = 0.0,
) -> None:
    """
    Start C{argv} in C{directory}, in a session and process group of its
    own, with exactly the environment C{env}, through the L{TRAMPOLINE}.

    @param dieWithParentAfter: if above 0, on Linux, the whole process
        group gets SIGTERM when llmux dies without stopping it (killed,
        crashed), and SIGKILL this many seconds later: a server llmux owns
        must not outlive it. Hooks are left alone (0), since a wake script
        may start a server meant to outlive llmux.

    Changing directory in the child (rather than with C{spawnProcess}'s
    C{path}) reports a missing directory as the process's failure and lets
    Twisted use C{posix_spawn}.
    """
    reactor.spawnProcess(
        protocol,
        sys.executable,
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            TRAMPOLINE,
            directory,
            repr(float(dieWithParentAfter)),
            *argv,
        ],
        env=dict(env),
    )


def runScript(
    reactor: Any,
    model: ModelConfig,
    hook: str,
    script: str,
    timeout: float | None,
    killGraceSecs: float,
    outputLimit: int,
) -> Deferred[HookResult]:
    """
    Run C{script} as C{hook} of C{model}: C{sh -c script} in the model's
    directory, with llmux's environment plus the model's hook environment
    (C{LLMUX_MODEL}, ...), its stdin closed and the tails of its output kept.

    It is over once it has exited and closed its stdout and stderr (see the
    module docstring about background processes). Past C{timeout}, its
    process group gets SIGTERM, then SIGKILL after C{killGraceSecs}, and it
    counts as failed.

    @param reactor: an L{IReactorProcess} and L{IReactorTime} provider.
    @return: fires with a L{HookResult} however the hook ended, including
        when it could not be started.
    """
    startedAt = reactor.seconds()
    protocol = _HookProtocol(reactor, timeout, killGraceSecs, outputLimit)
    env = dict(os.environ)
    env.update(model.hookEnvironment())
    try:
        spawnInGroup(reactor, protocol, model.directory, ["/bin/sh", "-c", script], env)
    except Exception as e:
        return succeed(
            HookResult(
                model=model.name,
                hook=hook,
                exitCode=SPAWN_FAILED,
                signal=None,
                timedOut=False,
                durationSecs=reactor.seconds() - startedAt,
                stderr=f"llmux: cannot start hook: {e}\n".encode(errors="replace"),
            )
        )

    def ended(outcome: tuple[Failure, bool]) -> HookResult:
        reason, timedOut = outcome
        exitCode, signum = exitStatus(reason)
        return HookResult(
            model=model.name,
            hook=hook,
            exitCode=exitCode,
            signal=signum,
            timedOut=timedOut,
            durationSecs=reactor.seconds() - startedAt,
            stdout=protocol.stdout.value(),
            stderr=protocol.stderr.value(),
        )

    return protocol.ended.addCallback(ended)
