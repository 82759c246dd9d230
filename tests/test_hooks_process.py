"""
Tests for backends llmux runs itself (C{command:}, L{llmux.hooks.process}),
with real processes over loopback: the fake backend as the server.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import treq
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from llmux.config import Config, ModelConfig, parseConfig
from llmux.hooks import HookRunner
from llmux.policies.fifo import FifoPolicy
from llmux.service import makeLlmuxService

from .helpers import freePort

reactor: Any = _reactor


def fakeServer(port: int, model: str, *extra: str) -> list[str]:
    """
    The command that runs the fake backend for C{model} on C{port}.
    """
    return [
        sys.executable,
        "-m",
        "llmux.testing.fakebackend",
        "--port",
        str(port),
        "--model",
        model,
        *extra,
    ]


#: A server that answers /health but ignores SIGTERM.
STUBBORN = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def gone(pid: int) -> bool:
    """
    Whether no process C{pid} exists any more (zombies count as gone).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


class ManagedProcessTests(TestCase):
    """
    The hook runner starting, checking and stopping a model's process.
    """

    timeout = 30

    def runner(self, **timeouts: float) -> HookRunner:
        runner = HookRunner(reactor, timeouts={"wake": 20.0, **timeouts})
        self.addCleanup(runner.processes.stopAll)
        return runner

    def model(self, **settings: Any) -> ModelConfig:
        port = settings.pop("port", None) or freePort()
        return parseConfig({"models": {"m": {"port": port, **settings}}}).models[0]

    async def until(self, condition: Any) -> None:
        for _ in range(400):
            if condition():
                return
            await deferLater(reactor, 0.025)
        self.fail("condition never became true")

    def pid(self, runner: HookRunner, model: str) -> int:
        pgid = runner.processes._running[model].protocol.pgid
        assert pgid is not None
        return pgid

    async def test_startCheckStop(self) -> None:
        """
        Wake starts the server and waits until it answers; alive checks it;
        sleep stops its whole process group, and alive then fails.
        """
        port = freePort()
        model = self.model(port=port, command=fakeServer(port, "m"))
        runner = self.runner()
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        pid = self.pid(runner, "m")
        self.assertTrue((await runner.run(model, "alive")).succeeded)
        self.assertTrue((await runner.run(model, "sleep")).succeeded)
        self.assertTrue(gone(pid))
        self.assertFalse(runner.processes.running("m"))
        alive = await runner.run(model, "alive")
        self.assertEqual(alive.describeFailure(), "backend process is not running")

    async def test_exitNoticed(self) -> None:
        """
        A server that dies is reported at once, with how it ended.
        """
        port = freePort()
        model = self.model(port=port, command=fakeServer(port, "m"))
        runner = self.runner()
        exited: Deferred[tuple[str, str]] = Deferred()
        runner.processes.onExit = lambda name, reason: exited.callback((name, reason))
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        os.killpg(self.pid(runner, "m"), signal.SIGKILL)
        name, reason = await exited
        self.assertEqual(name, "m")
        self.assertTrue(reason.startswith("exited (signal 9"), reason)
        self.assertFalse(runner.processes.running("m"))

    async def test_noSuchCommand(self) -> None:
        """
        A command that does not exist fails the wake with the reason.
        """
        model = self.model(command="no-such-llmux-server --port 1")
        result = await self.runner().run(model, "wake")
        self.assertFalse(result.succeeded)
        self.assertEqual(
            result.describeFailure(),
            "exited before it was ready (exit code 127: llmux: cannot start"
            " no-such-llmux-server: No such file or directory)",
        )

    async def test_neverReady(self) -> None:
        """
        A server that is still not ready when the wake timeout ends fails
        the wake, is stopped, and the error says what the check got.
        """
        port = freePort()
        model = self.model(
            port=port, command=fakeServer(port, "m", "--ready-after", "600")
        )
        runner = self.runner(wake=1.5)
        result = await runner.run(model, "wake")
        self.assertTrue(result.timedOut)
        self.assertRegex(
            result.describeFailure(),
            r"^timed out after .*: not ready after 1.5s \(GET /health: status 503",
        )
        self.assertFalse(runner.processes.running("m"))

    async def test_portTaken(self) -> None:
        """
        A server llmux did not start already answers on the model's port:
        llmux does not start a second one beside it, and says why.
        """
        port = freePort()
        other = parseConfig(
            {"models": {"other": {"port": port, "command": fakeServer(port, "o")}}}
        ).models[0]
        runner = self.runner()
        self.assertTrue((await runner.run(other, "wake")).succeeded)
        model = self.model(port=port, command=fakeServer(port, "m"))
        result = await runner.run(model, "wake")
        self.assertEqual(
            result.describeFailure(),
            f"another server already answers GET /health on port {port}:"
            " stop it, or let llmux adopt it by removing command",
        )
        self.assertFalse(runner.processes.running("m"))

    async def test_failedWakeStopsServer(self) -> None:
        """
        A server that runs asleep and fails its wake steps is stopped, so
        the next wake starts a fresh one instead of asking it again; the
        steps of a server that is gone are not run.
        """
        port = freePort()
        model = self.model(
            port=port,
            command=fakeServer(port, "m", "--backend", "vllm"),
            backend="vllm",
            wake=[{"method": "POST", "path": "/no-such-wake"}],
        )
        runner = self.runner()
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        pid = self.pid(runner, "m")
        self.assertTrue((await runner.run(model, "sleep")).succeeded)
        self.assertTrue(runner.processes.running("m"))
        result = await runner.run(model, "wake")
        self.assertRegex(result.describeFailure(), r"^step 1 \(POST /no-such-wake\)")
        self.assertFalse(runner.processes.running("m"))
        self.assertTrue(gone(pid))
        for hook in ("sleep", "unload"):
            self.assertTrue((await runner.run(model, hook)).succeeded)
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        self.assertNotEqual(self.pid(runner, "m"), pid)

    async def test_stopEscalates(self) -> None:
        """
        A server that ignores SIGTERM is killed after C{stop_timeout_secs}.
        """
        port = freePort()
        model = self.model(
            port=port,
            command=[sys.executable, "-c", STUBBORN, str(port)],
            stop_timeout_secs=0.5,
        )
        runner = self.runner()
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        pid = self.pid(runner, "m")
        result = await runner.run(model, "sleep")
        self.assertTrue(result.succeeded)
        self.assertGreaterEqual(result.durationSecs, 0.5)
        self.assertTrue(gone(pid))


class ManagedServiceTests(TestCase):
    """
    llmux with managed backends, end to end.
    """

    timeout = 60

    def start(self, config: Config) -> str:
        service = makeLlmuxService(
            config, FifoPolicy(), "tcp:0:interface=127.0.0.1", reactor
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        assert service.port is not None
        return f"http://127.0.0.1:{service.port.getHost().port}"

    async def chat(self, base: str, model: str) -> tuple[int, Any]:
        response = await treq.post(
            base + "/v1/chat/completions",
            json.dumps({"model": model, "messages": []}).encode(),
            headers={"Content-Type": "application/json"},
            pool=self.pool,
        )
        return response.code, json.loads(await response.content())

    async def test_crashAndRecover(self) -> None:
        """
        A managed backend killed with SIGKILL is noticed at once (it stops
        being awake without any health check), and the next request is
        served after an automatic restart. A model whose command does not
        exist fails its wake with a clear error while the others serve on.
        Stopping llmux stops every managed process.
        """
        portA, portB = freePort(), freePort()
        config = parseConfig(
            {
                "models": {
                    "A": {"port": portA, "command": fakeServer(portA, "A")},
                    "B": {"port": portB, "command": fakeServer(portB, "B")},
                    "C": {"port": freePort(), "command": "no-such-llmux-server"},
                },
                "adopt_running": False,
                "alive_interval_secs": 0,
            }
        )
        base = self.start(config)
        processes = self.service.processes
        assert processes is not None
        code, body = await self.chat(base, "A")
        self.assertEqual((code, body["model"]), (200, "A"))
        pid = processes._running["A"].protocol.pgid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        switcher = self.service.switcher
        for _ in range(200):
            if switcher.views()[0].state.value != "awake":
                break
            await deferLater(reactor, 0.025)
        self.assertNotEqual(switcher.views()[0].state.value, "awake")
        code, body = await self.chat(base, "A")
        self.assertEqual((code, body["model"]), (200, "A"))
        self.assertTrue(processes.running("A"))

        code, body = await self.chat(base, "C")
        self.assertNotEqual(code, 200)
        self.assertIn("cannot start no-such-llmux-server", body["error"]["message"])
        code, body = await self.chat(base, "B")
        self.assertEqual((code, body["model"]), (200, "B"))
        self.assertFalse(processes.running("A"))

        pidB = processes._running["B"].protocol.pgid
        assert pidB is not None
        await self.service.stopService()
        self.assertFalse(processes.running("B"))
        self.assertTrue(gone(pidB))


class _Ended(ProcessProtocol):
    """
    Fires C{ended} when the process has ended; its output is dropped.
    """

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


def pidsWith(word: str) -> list[int]:
    """
    The processes whose command line has C{word} as one of its arguments.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if word.encode() in args and not gone(int(entry)):
                pids.append(int(entry))
    return pids


class OrphanTests(TestCase):
    """
    A server llmux runs does not outlive llmux, even when llmux is killed.
    """

    timeout = 60

    async def test_killedLlmux(self) -> None:
        """
        llmux killed with SIGKILL (no chance to stop anything): its managed
        server's whole process group gets SIGTERM and exits, even a server
        that a shell command started as its child (not exec'ed).
        """
        port, backendPort = freePort(), freePort()
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump(
                {
                    "port": port,
                    "models": {
                        "A": {
                            "port": backendPort,
                            # "; true" keeps the shell as the server's parent.
                            "command": " ".join(fakeServer(backendPort, "A"))
                            + "; true",
                        }
                    },
                },
                f,
            )
        llmux = _Ended()
        process = reactor.spawnProcess(
            llmux,
            sys.executable,
            [sys.executable, "-c", "from llmux._cli import main; main()", "-c", path],
            env=os.environ,
        )
        self.addCleanup(self.ended, process, llmux)
        pool = HTTPConnectionPool(reactor, persistent=False)
        base = f"http://127.0.0.1:{port}"
        for _ in range(400):
            try:
                await treq.get(base + "/health", pool=pool)
                break
            except Exception:
                await deferLater(reactor, 0.025)
        response = await treq.post(
            base + "/v1/chat/completions",
            json.dumps({"model": "A", "messages": []}).encode(),
            pool=pool,
        )
        self.assertEqual(response.code, 200)
        await response.content()
        servers = pidsWith(str(backendPort))
        self.assertTrue(servers)
        process.signalProcess("KILL")
        await llmux.ended
        for _ in range(400):
            if all(gone(pid) for pid in servers):
                break
            await deferLater(reactor, 0.025)
        self.assertEqual([pid for pid in servers if not gone(pid)], [])

    async def ended(self, process: Any, llmux: _Ended) -> None:
        """
        However the test went, llmux is gone when it ends.
        """
        if not llmux.ended.called:
            process.signalProcess("KILL")
        await llmux.ended
