"""
Tests for L{llmux.hooks}.

Process behaviour is tested with the real reactor and a real C{/bin/sh}: the
hooks take milliseconds. Timer bookkeeping is tested with a L{Clock} standing
in for the reactor's time, while processes still run on the real reactor.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import sys
from collections.abc import Callable
from typing import Any, cast

import attrs
from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall, IProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from llmux.config import ModelConfig
from llmux.hooks import HookRunner
from llmux.hooks.shell import Tail as _Tail
from llmux.interfaces import HookResult, IHookRunner
from llmux.logs import setVerbose

from .helpers import isRunning


class _SplitReactor:
    """
    The real reactor's processes with a L{Clock}'s time, so a test can see
    and drive the hook timers.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def spawnProcess(
        self, protocol: IProcessProtocol, executable: str, *a: Any, **kw: Any
    ) -> Any:
        """
        Spawn on the real reactor.
        """
        return reactor.spawnProcess(protocol, executable, *a, **kw)

    def callLater(
        self, delay: float, f: Callable[..., object], *a: Any, **kw: Any
    ) -> IDelayedCall:
        """
        Schedule on the clock.
        """
        return self.clock.callLater(delay, f, *a, **kw)

    def seconds(self) -> float:
        """
        The clock's time.
        """
        return self.clock.seconds()


class TailTests(TestCase):
    """
    Tests for L{_Tail}, the bounded output buffer.
    """

    def test_keepsLastBytes(self) -> None:
        """
        Whatever the chunk sizes, the tail is the last C{limit} bytes written,
        and no more than one chunk beyond the limit is held.
        """
        rng = random.Random(42)
        for limit in (1, 7, 100):
            tail = _Tail(limit)
            written = b""
            for _ in range(200):
                chunk = rng.randbytes(rng.randint(0, 3 * limit))
                tail.write(chunk)
                written += chunk
                self.assertEqual(tail.value(), written[-limit:])
                self.assertLessEqual(tail._size, 2 * limit)

    def test_zeroLimit(self) -> None:
        """
        A limit of 0 keeps nothing.
        """
        tail = _Tail(0)
        tail.write(b"abc")
        self.assertEqual(tail.value(), b"")


class HookRunnerTests(TestCase):
    """
    Tests for L{HookRunner} with real C{sh} processes.
    """

    timeout = 10

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def model(
        self, script: str, name: str = "m", directory: str | None = None
    ) -> ModelConfig:
        """
        A model whose hooks all run C{script} in the test's directory.
        """
        return ModelConfig(
            name=name,
            port=8000,
            wake=script,
            sleep=script,
            alive=script,
            directory=self.directory if directory is None else directory,
        )

    async def runHook(
        self, script: str, hook: str = "wake", name: str = "m", **kw: Any
    ) -> HookResult:
        """
        Run C{script} as C{hook} with a L{HookRunner} on the real reactor.
        """
        runner = HookRunner(reactor, **kw)
        return await runner.run(self.model(script, name), hook)

    def path(self, name: str) -> str:
        """
        A file in the test's directory.
        """
        return os.path.join(self.directory, name)

    def readPid(self, name: str) -> int:
        """
        Read a pid a hook wrote, and make sure it does not outlive the test.
        """
        with open(self.path(name)) as f:
            pid = int(f.read())
        self.addCleanup(self.killQuietly, pid)
        return pid

    def killQuietly(self, pid: int) -> None:
        """
        SIGKILL C{pid} if it is still running.
        """
        if isRunning(pid):
            os.kill(pid, signal.SIGKILL)

    async def assertGone(self, pid: int, limit: float = 3.0) -> None:
        """
        Wait, up to C{limit} seconds, for process C{pid} to be dead.
        """
        deadline = reactor.seconds() + limit
        while isRunning(pid):
            if reactor.seconds() > deadline:
                self.fail(f"process {pid} still running after {limit}s")
            await deferLater(reactor, 0.02, lambda: None)

    async def waitForFile(self, name: str, limit: float = 3.0) -> None:
        """
        Wait, up to C{limit} seconds, for a hook to create file C{name}.
        """
        deadline = reactor.seconds() + limit
        while not os.path.exists(self.path(name)):
            if reactor.seconds() > deadline:
                self.fail(f"no {name} after {limit}s")
            await deferLater(reactor, 0.02, lambda: None)

    def eventsNamed(self, name: str) -> list[LogEvent]:
        """
        The captured log events with C{event=name}.
        """
        return [e for e in self.events if e.get("event") == name]

    def test_interface(self) -> None:
        """
        L{HookRunner} provides L{IHookRunner}.
        """
        self.assertTrue(verifyObject(IHookRunner, HookRunner(reactor)))

    async def test_environment(self) -> None:
        """
        The hook sees C{LLMUX_MODEL} and llmux's own environment.
        """
        self.patch(os, "environ", {**os.environ, "LLMUX_TEST_INHERITED": "yes"})
        result = await self.runHook(
            'printf "%s/%s" "$LLMUX_MODEL" "$LLMUX_TEST_INHERITED"', name="big"
        )
        self.assertTrue(result.succeeded)
        self.assertEqual(result.stdout, b"big/yes")

    async def test_directory(self) -> None:
        """
        The hook runs in the model's directory.
        """
        result = await self.runHook("pwd -P")
        self.assertEqual(
            result.stdout, os.path.realpath(self.directory).encode() + b"\n"
        )

    async def test_relativeScriptPath(self) -> None:
        """
        A script path relative to the model's directory works.
        """
        script = self.path("wake.sh")
        with open(script, "w") as f:
            f.write('#!/bin/sh\necho "woke $LLMUX_MODEL"\n')
        os.chmod(script, stat.S_IRWXU)
        result = await self.runHook("./wake.sh")
        self.assertTrue(result.succeeded)
        self.assertEqual(result.stdout, b"woke m\n")

    async def test_inlineMultiLineScript(self) -> None:
        """
        An inline script of several lines runs as a whole.
        """
        result = await self.runHook("a=2\nb=3\necho $((a + b))\necho done\n")
        self.assertTrue(result.succeeded)
        self.assertEqual(result.stdout, b"5\ndone\n")

    async def test_outputCaptured(self) -> None:
        """
        stdout and stderr are captured separately.
        """
        result = await self.runHook("echo out; echo err >&2")
        self.assertEqual((result.stdout, result.stderr), (b"out\n", b"err\n"))

    async def test_stdinClosed(self) -> None:
        """
        The hook's stdin is closed, so a command reading it ends at once.
        """
        result = await self.runHook("cat; echo done")
        self.assertEqual(result.stdout, b"done\n")

    async def test_nonZeroExit(self) -> None:
        """
        A non-zero exit is a failed result carrying the code and stderr.
        """
        result = await self.runHook("echo first >&2; echo 'no GPU' >&2; exit 3")
        self.assertEqual(
            (result.exitCode, result.signal, result.timedOut), (3, None, False)
        )
        self.assertFalse(result.succeeded)
        self.assertEqual(result.describeFailure(), "exit code 3: no GPU")

    async def test_sigpipeDefault(self) -> None:
        """
        The hook gets SIGPIPE's default action, not the one Python ignores.
        """
        result = await self.runHook("sh -c 'kill -PIPE $$'; echo status=$?")
        self.assertEqual(result.stdout, b"status=%d\n" % (128 + signal.SIGPIPE))

    async def test_modelNameNotInterpolated(self) -> None:
        """
        The model name reaches the hook only as the value of C{LLMUX_MODEL},
        however many shell metacharacters it has.
        """
        name = "x; touch pwned $(id) `id` && touch pwned2 | 'q\" \\"
        result = await self.runHook('printf "%s" "$LLMUX_MODEL"', name=name)
        self.assertTrue(result.succeeded)
        self.assertEqual(result.stdout, name.encode())
        self.assertEqual(os.listdir(self.directory), [])

    async def test_outputBounded(self) -> None:
        """
        Only the last C{outputLimit} bytes of each stream are kept.
        """
        script = (
            "yes abcdefgh | head -c 1048576; printf END\n"
            "yes 12345678 | head -c 1048576 >&2; printf END >&2"
        )
        result = await self.runHook(script, outputLimit=1000)
        self.assertTrue(result.succeeded)
        for stream, line in (
            (result.stdout, b"abcdefgh\n"),
            (result.stderr, b"12345678\n"),
        ):
            written = (line * 116509)[:1048576] + b"END"
            self.assertEqual(stream, written[-1000:])

    async def test_timeoutKillsProcessGroup(self) -> None:
        """
        A hook that outlives its timeout is killed with everything it started,
        even a background process that does not hold its pipes, and counts as
        failed.
        """
        script = (
            "sleep 30 >/dev/null 2>&1 </dev/null &\n"
            "echo $! >grandchild.pid\n"
            "sleep 30\n"
            "wait\n"
        )
        result = await self.runHook(script, timeouts={"wake": 0.3}, killGraceSecs=5)
        grandchild = self.readPid("grandchild.pid")
        self.assertTrue(result.timedOut)
        self.assertFalse(result.succeeded)
        self.assertEqual(result.signal, signal.SIGTERM)
        self.assertGreaterEqual(result.durationSecs, 0.3)
        self.assertLess(result.durationSecs, 5)
        self.assertIn("timed out", result.describeFailure())
        await self.assertGone(grandchild)

    async def test_timeoutEndsPipeHolder(self) -> None:
        """
        A hook whose shell exits 0 while a background process holds its
        pipes only ends when the pipes close; the timeout kills the group and
        the hook still counts as failed.
        """
        script = "sleep 30 &\necho $! >grandchild.pid\necho started\n"
        result = await self.runHook(script, timeouts={"wake": 0.3}, killGraceSecs=5)
        grandchild = self.readPid("grandchild.pid")
        self.assertEqual((result.exitCode, result.timedOut), (0, True))
        self.assertFalse(result.succeeded)
        self.assertEqual(result.stdout, b"started\n")
        await self.assertGone(grandchild)

    async def test_timeoutEndsEscapedPipeHolder(self) -> None:
        """
        A background process that left the hook's process group but holds
        its pipes does not keep the hook from ending: after SIGKILL, llmux
        closes the pipes and the hook ends as timed out.
        """
        escape = (
            "import os, time; os.setsid();"
            " open('escaped.pid', 'w').write(str(os.getpid())); time.sleep(30)"
        )
        script = (
            f'{sys.executable} -c "{escape}" &\n'
            "while [ ! -s escaped.pid ]; do sleep 0.01; done\n"
            "sleep 30\n"
        )
        result = await self.runHook(script, timeouts={"wake": 1}, killGraceSecs=0.2)
        self.readPid("escaped.pid")
        self.assertTrue(result.timedOut)
        self.assertLess(result.durationSecs, 5)

    async def test_sigtermIgnored(self) -> None:
        """
        A hook that ignores SIGTERM is SIGKILLed once the grace period is over.
        """
        result = await self.runHook(
            "trap '' TERM\nsleep 30\n", timeouts={"wake": 0.2}, killGraceSecs=0.3
        )
        self.assertTrue(result.timedOut)
        self.assertEqual(result.signal, signal.SIGKILL)
        self.assertGreaterEqual(result.durationSecs, 0.5)

    async def test_backgroundWithRedirectedOutput(self) -> None:
        """
        A hook that starts a server with its output redirected ends when the
        shell exits, leaving the server running.
        """
        script = "sleep 30 >/dev/null 2>&1 &\necho $! >server.pid\n"
        result = await self.runHook(script, timeouts={"wake": 5})
        server = self.readPid("server.pid")
        self.assertTrue(result.succeeded)
        self.assertLess(result.durationSecs, 5)
        self.assertTrue(isRunning(server))

    async def test_missingDirectory(self) -> None:
        """
        A hook whose directory does not exist fails with the reason in stderr.
        """
        missing = self.path("missing")
        runner = HookRunner(reactor)
        result = await runner.run(self.model("true", directory=missing), "wake")
        self.assertFalse(result.succeeded)
        self.assertEqual(result.exitCode, 127)
        self.assertIn(b"cannot enter hook directory", result.stderr)
        self.assertIn(missing.encode(), result.stderr)
        self.assertEqual(len(self.eventsNamed("hook_failed")), 1)

    async def test_spawnError(self) -> None:
        """
        A hook that cannot even be spawned gives a failed result, not an
        exception.
        """
        result = await self.runHook("true", name="nul\0byte")
        self.assertFalse(result.succeeded)
        self.assertEqual(result.exitCode, 127)
        self.assertIn(b"cannot start hook", result.stderr)
        self.assertIn("cannot start hook", result.describeFailure())
        [event] = self.eventsNamed("hook_failed")
        self.assertEqual(event["model"], "nul\0byte")

    def test_unknownHook(self) -> None:
        """
        Asking for a hook that does not exist is a programming error.
        """
        runner = HookRunner(reactor)
        self.assertRaises(ValueError, runner.run, self.model("true"), "port")

    async def test_logCompleted(self) -> None:
        """
        A successful hook logs C{hook_completed} with its model, hook and
        duration, and (with --verbose) its output at debug level.
        """
        setVerbose(True)
        self.addCleanup(setVerbose, False)
        clock = Clock()
        runner = HookRunner(_SplitReactor(clock))
        running = runner.run(self.model("echo hello"), "sleep")
        clock.advance(1.25)
        result = await running
        self.assertEqual(result.durationSecs, 1.25)
        [event] = self.eventsNamed("hook_completed")
        self.assertEqual(
            (event["model"], event["hook"], event["duration_secs"]),
            ("m", "sleep", 1.25),
        )
        self.assertEqual(event["log_level"].name, "info")
        self.assertEqual(formatEvent(event), "m: sleep hook completed in 1.25s")
        self.assertEqual(self.eventsNamed("hook_failed"), [])
        [output] = self.eventsNamed("hook_output")
        self.assertEqual(output["log_level"].name, "debug")
        self.assertEqual(output["stdout"], "hello\n")

    async def test_logAliveCompletedAtDebug(self) -> None:
        """
        A successful C{alive} hook, which a healthy model runs every
        C{alive_interval_secs}, logs C{hook_completed} at debug level only.
        """
        setVerbose(True)
        self.addCleanup(setVerbose, False)
        result = await self.runHook("true", hook="alive")
        self.assertTrue(result.succeeded)
        [event] = self.eventsNamed("hook_completed")
        self.assertEqual(event["log_level"].name, "debug")

    async def test_logFailed(self) -> None:
        """
        A failed hook logs C{hook_failed} with its exit status and stderr.
        """
        result = await self.runHook("printf 'bad \\377\\n' >&2; exit 4", hook="sleep")
        [event] = self.eventsNamed("hook_failed")
        self.assertEqual(
            {
                key: event[key]
                for key in ("model", "hook", "exit_code", "signal", "timed_out")
            },
            {
                "model": "m",
                "hook": "sleep",
                "exit_code": 4,
                "signal": None,
                "timed_out": False,
            },
        )
        self.assertEqual(event["duration_secs"], result.durationSecs)
        self.assertEqual(event["stderr"], "bad \ufffd\n")
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("exit code 4: bad", formatEvent(event))
        self.assertEqual(self.eventsNamed("hook_completed"), [])

    async def test_logNotAlive(self) -> None:
        """
        An alive hook exiting non-zero answered "not alive", which is routine
        for a sleeping model: logged at info, not as a warning.
        """
        await self.runHook("exit 1", hook="alive")
        [event] = self.eventsNamed("hook_failed")
        self.assertEqual((event["hook"], event["exit_code"]), ("alive", 1))
        self.assertEqual(event["log_level"].name, "info")

    async def test_logTimedOut(self) -> None:
        """
        A timed-out hook logs C{hook_failed} saying so.
        """
        await self.runHook("sleep 30", timeouts={"wake": 0.1}, killGraceSecs=5)
        [event] = self.eventsNamed("hook_failed")
        self.assertEqual((event["timed_out"], event["signal"]), (True, signal.SIGTERM))
        self.assertIn("timed out", formatEvent(event))

    async def test_timersCancelled(self) -> None:
        """
        A hook that ends in time leaves no timer behind.
        """
        clock = Clock()
        runner = HookRunner(_SplitReactor(clock), timeouts={"wake": 5})
        running = runner.run(self.model("true"), "wake")
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [5])
        result = await running
        self.assertTrue(result.succeeded)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_timeoutsPerHook(self) -> None:
        """
        Each hook has its own timeout; C{None} or no entry means no limit.
        """
        clock = Clock()
        runner = HookRunner(_SplitReactor(clock), timeouts={"sleep": 2, "alive": None})
        for hook, expected in (("wake", []), ("sleep", [2.0]), ("alive", [])):
            running = runner.run(self.model("true"), hook)
            self.assertEqual(
                [c.getTime() for c in clock.getDelayedCalls()], expected, hook
            )
            self.assertTrue((await running).succeeded)

    async def test_unloadHook(self) -> None:
        """
        The C{unload} hook runs like the others, under the C{sleep} timeout;
        a model without one cannot run it.
        """
        clock = Clock()
        runner = HookRunner(_SplitReactor(clock), timeouts={"sleep": 2, "wake": 9})
        model = attrs.evolve(self.model("false"), unload="echo unloaded $LLMUX_MODEL")
        running = runner.run(model, "unload")
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [2.0])
        result = await running
        self.assertEqual((result.hook, result.stdout), ("unload", b"unloaded m\n"))
        with self.assertRaises(ValueError):
            runner.run(self.model("true"), "unload")

    async def test_placementEnvironment(self) -> None:
        """
        A hook run for a placement of a declared capacity sees
        C{LLMUX_PLACEMENT} and C{LLMUX_POOLS}.
        """
        model = attrs.evolve(
            self.model('printf "%s %s" "$LLMUX_PLACEMENT" "$LLMUX_POOLS"'),
            resources=({"gpu0": 30}, {"gpu1": 30, "ram": 8}),
            pools=("gpu0", "gpu1", "ram"),
        )
        result = await HookRunner(reactor).run(model.placed(1), "wake")
        self.assertEqual(result.stdout, b"1 gpu1,ram")

    async def test_clockDrivenTimeout(self) -> None:
        """
        The timeout and the grace period are measured by the reactor's clock:
        SIGTERM when the timeout expires, SIGKILL only after the grace period.
        """
        clock = Clock()
        runner = HookRunner(
            _SplitReactor(clock), timeouts={"wake": 10}, killGraceSecs=3
        )
        script = "trap '' TERM\necho >ready\nsleep 30\n"
        running = runner.run(self.model(script), "wake")
        await self.waitForFile("ready")
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [10])
        clock.advance(10)
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [13])
        self.assertFalse(running.called)
        clock.advance(3)
        result = await running
        self.assertEqual((result.timedOut, result.signal), (True, signal.SIGKILL))
        self.assertEqual(result.durationSecs, 13)
        self.assertEqual(clock.getDelayedCalls(), [])
