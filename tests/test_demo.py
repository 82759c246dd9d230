"""
Tests for the demo in C{examples/demo}: its config loads, and its hooks
really start, check and stop a fake backend, run as llmux runs them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from llmux.config import loadConfig

from .helpers import freePort, isRunning

DEMO = FilePath(__file__).parent().sibling("examples").child("demo")
HOOKS = DEMO.child("hooks")
SRC = FilePath(__file__).parent().sibling("src").path
MODEL = "demo-model"


class HangUp(Protocol):
    """
    Close every connection at once: a port that is taken but answers nothing.
    """

    def connectionMade(self) -> None:
        self.transport.loseConnection()


class DemoConfigTests(TestCase):
    """
    C{examples/demo/config.yaml}.
    """

    def test_loads(self) -> None:
        """
        The config loads: three models on distinct ports, whose hooks are the
        demo's executable scripts, relative to the config's directory.
        """
        config = loadConfig(DEMO.child("config.yaml").path)
        self.assertEqual(config.modelNames, ("llama", "mistral", "qwen"))
        self.assertEqual(len({m.port for m in config.models}), 3)
        self.assertEqual(config.policy.request_timeout_secs, 60)
        for model in config.models:
            self.assertEqual(model.directory, DEMO.path)
            for hook, script in [
                (model.wake, "wake.sh"),
                (model.sleep, "sleep.sh"),
                (model.alive, "alive.sh"),
            ]:
                self.assertEqual(hook, f"./hooks/{script} {model.port}")
                self.assertTrue(os.access(HOOKS.child(script).path, os.X_OK))


class DemoHookTests(TestCase):
    """
    The demo's hooks, run for real on a free port with their state in a
    temporary directory.
    """

    timeout = 30

    def setUp(self) -> None:
        self.state = FilePath(self.mktemp())
        self.state.makedirs()
        self.port = freePort()
        self.pidfile = self.state.child(f"llmux-demo-{self.port}.pid")
        self.logfile = self.state.child(f"llmux-demo-{self.port}.log")
        pythonpath = [SRC, os.environ.get("PYTHONPATH", "")]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
            "LLMUX_MODEL": MODEL,
            "TMPDIR": self.state.path,
        }
        self.addCleanup(self.stopBackend)

    async def hook(
        self, script: str, args: Sequence[str] | None = None
    ) -> tuple[bytes, bytes, int]:
        """
        Run a demo hook as llmux does, in the config's directory; return its
        stdout, stderr and exit code. C{args} default to the test's port.
        """
        out, err, code = await getProcessOutputAndValue(
            f"./hooks/{script}",
            [str(self.port)] if args is None else args,
            env=self.env,
            path=DEMO.path,
            reactor=reactor,
        )
        return out, err, code

    async def assertHook(self, script: str, expected: int = 0) -> bytes:
        """
        Run a hook for the test's port; check its exit code; return stderr.
        """
        out, err, code = await self.hook(script)
        self.assertEqual(code, expected, f"{script}: {out!r} {err!r}")
        return err

    async def stopBackend(self) -> None:
        """
        Stop any backend this test left running: with the sleep hook, and
        failing that, with SIGKILL.
        """
        await self.hook("sleep.sh")
        if self.pidfile.exists():
            pid = int(self.pidfile.getContent())
            if isRunning(pid):
                os.kill(pid, signal.SIGKILL)

    async def getJSON(self, path: str) -> object:
        """
        GET C{path} from the backend on the test's port.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))
        url = f"http://127.0.0.1:{self.port}{path}"
        response = await http.get(url)
        self.assertEqual(response.code, 200)
        return json.loads(await response.content())

    async def test_wakeAliveSleep(self) -> None:
        """
        C{wake.sh} starts a backend serving C{$LLMUX_MODEL} and returns once
        it answers; a second C{wake.sh} leaves it alone; C{alive.sh} says
        it is up until C{sleep.sh} stops it; C{sleep.sh} again is a no-op.
        """
        await self.assertHook("wake.sh")
        pid = int(self.pidfile.getContent())
        self.assertTrue(isRunning(pid))
        self.assertEqual(await self.getJSON("/health"), {"status": "ok"})
        models = await self.getJSON("/v1/models")
        self.assertEqual([m["id"] for m in models["data"]], [MODEL])  # type: ignore[index]

        await self.assertHook("wake.sh")
        self.assertEqual(int(self.pidfile.getContent()), pid)
        self.assertEqual(self.logfile.getContent().count(b"wake.sh: starting"), 1)
        await self.assertHook("alive.sh")

        await self.assertHook("sleep.sh")
        self.assertFalse(isRunning(pid))
        self.assertFalse(self.pidfile.exists())
        err = await self.assertHook("alive.sh", 1)
        self.assertIn(b"no answer", err)
        await self.assertHook("sleep.sh")

    async def test_wakeAfterCrash(self) -> None:
        """
        If the backend died behind the hooks' back, C{wake.sh} starts a new
        one and C{alive.sh} notices the death.
        """
        await self.assertHook("wake.sh")
        pid = int(self.pidfile.getContent())
        os.kill(pid, signal.SIGKILL)
        await self.assertHook("alive.sh", 1)
        await self.assertHook("wake.sh")
        self.assertNotEqual(int(self.pidfile.getContent()), pid)
        self.assertEqual(await self.getJSON("/health"), {"status": "ok"})

    async def test_wakeFailsWhenBackendExits(self) -> None:
        """
        When the backend cannot start (its port is taken), C{wake.sh} fails
        at once, with the backend's own complaint on stderr.
        """
        busy = reactor.listenTCP(
            self.port, Factory.forProtocol(HangUp), interface="127.0.0.1"
        )
        self.addCleanup(busy.stopListening)
        err = await self.assertHook("wake.sh", 1)
        self.assertIn(b"exited", err)
        self.assertIn(b"cannot listen", err)
        self.assertFalse(self.pidfile.exists())

    async def test_wakeNeedsModel(self) -> None:
        """
        Without C{LLMUX_MODEL}, C{wake.sh} fails and says why.
        """
        del self.env["LLMUX_MODEL"]
        out, err, code = await self.hook("wake.sh")
        self.assertNotEqual(code, 0)
        self.assertIn(b"LLMUX_MODEL", err)

    async def test_hooksNeedPort(self) -> None:
        """
        Every hook fails, and says how to call it, without a numeric PORT.
        """
        for script in ("wake.sh", "sleep.sh", "alive.sh"):
            for args in [(), ("x1",)]:
                out, err, code = await self.hook(script, args)
                self.assertNotEqual(code, 0, script)
                self.assertIn(b"PORT", err)
