"""
End-to-end tests of the admin API and of reloading the config (SPEC
section 11), over loopback with real hook processes and fake backends.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import treq
import yaml
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from llmux.accessconfig import AuthConfig
from llmux.config import loadConfig
from llmux.policies.fifo import FifoPolicy
from llmux.service import makeLlmuxService
from llmux.web.auth import Denied, adminAccess

from .test_e2e import Harness
from .test_switcher import CapturedEvents

reactor: Any = _reactor

ADMIN = "admin-secret-for-tests"
TEAM = "team-secret-for-tests"


class AdminHarness(Harness):
    """
    L{Harness}, plus llmux started from a config file it can rewrite and
    reload.
    """

    def write(self, data: dict[str, Any]) -> str:
        path = self.directory.child("config.yaml")
        path.setContent(yaml.safe_dump(data).encode())
        return path.path

    def startFile(self, data: dict[str, Any]) -> str:
        path = self.write(data)
        config = loadConfig(path)
        self.service = makeLlmuxService(
            config,
            FifoPolicy.fromConfig(config.policy),
            "tcp:0:interface=127.0.0.1",
            reactor,
            source=path,
            policyName="fifo",
        )
        self.service.startService()
        self.case.addCleanup(self.service.stopService)
        assert self.service.port is not None
        return f"http://127.0.0.1:{self.service.port.getHost().port}"

    async def admin(
        self, base: str, path: str, key: str | None = None, method: str = "POST"
    ) -> tuple[int, Any]:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        response = await treq.request(
            method, base + path, headers=headers, pool=self.pool
        )
        return response.code, json.loads(await response.content())


class AdminTests(TestCase):
    """
    C{POST /llmux/models/<m>/<action>}.
    """

    timeout = 30

    def setUp(self) -> None:
        self.events = CapturedEvents(self)
        self.h = AdminHarness(self)
        self.models = {
            "A": self.h.recordingModel(self.h.backend("A")),
            "B": {**self.h.recordingModel(self.h.backend("B")), "unload": "true"},
        }

    async def test_actions(self) -> None:
        """
        With no admin key, a local client may wake, sleep, pin, unpin and
        unload; each answers JSON with the state, runs the hooks, and is
        logged.
        """
        base = self.h.startFile({"models": self.models})
        self.assertEqual(
            await self.h.admin(base, "/llmux/models/A/wake"),
            (200, {"model": "A", "action": "wake", "state": "awake"}),
        )
        self.assertEqual(
            await self.h.admin(base, "/llmux/models/A/pin"),
            (200, {"model": "A", "action": "pin", "state": "awake"}),
        )
        status = await (await treq.get(base + "/llmux/status", pool=self.h.pool)).json()
        self.assertTrue(status["models"]["A"]["pinned"])
        await self.h.admin(base, "/llmux/models/A/unpin")
        self.assertEqual(
            await self.h.admin(base, "/llmux/models/A/sleep"),
            (200, {"model": "A", "action": "sleep", "state": "asleep"}),
        )
        self.assertEqual(self.h.hooks(), ["wake A", "sleep A"])
        self.assertEqual(
            await self.h.admin(base, "/llmux/models/B/unload"),
            (200, {"model": "B", "action": "unload", "state": "unloaded"}),
        )
        code, body = await self.h.admin(base, "/llmux/models/A/unload")
        self.assertEqual(
            (code, body["error"]["message"]), (409, "Model A has no unload hook")
        )
        actions = [
            (e["action"], e["model"], e["by"])
            for e in self.events.named("admin_action")
        ]
        self.assertEqual(actions[0], ("wake", "A", "local"))

    async def test_sleepDrainsFirst(self) -> None:
        """
        Sleeping a busy model lets its stream finish first.
        """
        base = self.h.startFile({"models": self.models})
        stream = await self.h.stream(base, "A")
        code, body = await self.h.admin(base, "/llmux/models/A/sleep")
        self.assertEqual((code, body["state"]), (200, "asleep"))
        await stream.done
        self.assertTrue(stream.complete)

    async def test_keys(self) -> None:
        """
        With admin keys configured: no key is a 401, an API key a 403, an
        admin key may.
        """
        os.environ["ADMIN_KEY"], os.environ["TEAM_KEY"] = ADMIN, TEAM
        self.addCleanup(os.environ.pop, "ADMIN_KEY")
        self.addCleanup(os.environ.pop, "TEAM_KEY")
        base = self.h.startFile(
            {
                "models": self.models,
                "auth": {
                    "admin_keys": [{"name": "ops", "key_env": "ADMIN_KEY"}],
                    "api_keys": [{"name": "team", "key_env": "TEAM_KEY"}],
                },
            }
        )
        self.assertEqual((await self.h.admin(base, "/llmux/models/A/pin"))[0], 401)
        code, body = await self.h.admin(base, "/llmux/models/A/pin", TEAM)
        self.assertEqual(
            (code, body["error"]["message"]), (403, "Key 'team' is not an admin key")
        )
        self.assertEqual(
            (await self.h.admin(base, "/llmux/models/A/pin", ADMIN))[0], 200
        )
        self.assertEqual(self.events.named("admin_action")[-1]["by"], "ops")

    async def test_badRequests(self) -> None:
        """
        Other methods, unknown models and actions: clean JSON errors.
        """
        base = self.h.startFile({"models": self.models})
        for method, path, code in [
            ("GET", "/llmux/models/A/wake", 405),
            ("PUT", "/llmux/reload", 405),
            ("POST", "/llmux/models/nope/wake", 404),
            ("POST", "/llmux/models/A/explode", 404),
            ("POST", "/llmux/models/A", 404),
            ("POST", "/llmux/models/%ff/wake", 404),
        ]:
            got, body = await self.h.admin(base, path, method=method)
            self.assertEqual(got, code, path)
            self.assertIn("error", body)
        self.assertEqual(self.h.hooks(), [])


class LocalRuleTests(SynchronousTestCase):
    """
    Without admin keys, the admin API is for local clients only.
    """

    def test_remote(self) -> None:
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", "10.1.2.3", 5000)
        with self.assertRaises(Denied) as caught:
            adminAccess(AuthConfig(), request)
        self.assertEqual(caught.exception.status, 403)

    def test_local(self) -> None:
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", "127.0.0.1", 5000)
        self.assertIsNone(adminAccess(AuthConfig(), request))


class ReloadTests(TestCase):
    """
    C{POST /llmux/reload} and SIGHUP.
    """

    timeout = 30

    def setUp(self) -> None:
        self.events = CapturedEvents(self)
        self.h = AdminHarness(self)
        self.ports = {m: self.h.backend(m) for m in "ABCD"}

    def model(self, name: str, **extra: Any) -> dict[str, Any]:
        return {**self.h.recordingModel(self.ports[name]), **extra}

    def unit(self, name: str, **extra: Any) -> dict[str, Any]:
        """
        A model holding one unit of the C{gpu} pool.
        """
        return self.model(name, resources={"gpu": 1}, **extra)

    async def test_reload(self) -> None:
        """
        Removed, changed, added and unchanged models each get SPEC's
        treatment; a stream on each model that stays, changes or leaves
        finishes undisturbed (the changed and removed ones are drained
        before they sleep); no hook runs for the unchanged model.
        """
        h = self.h
        base = h.startFile(
            {
                "models": {
                    "A": self.unit("A"),
                    "B": self.unit("B"),
                    "C": self.unit("C"),
                },
                "capacity": {"gpu": 3},
            }
        )
        for name in "ABC":
            self.assertEqual((await h.chat(base, name))["model"], name)
        # With capacity 3 and one unit each, all three are awake.
        stream = await h.stream(base, "A")
        changing = await h.stream(base, "C")
        leaving = await h.stream(base, "B")
        h.write(
            {
                "models": {
                    "A": self.unit("A", aliases=["alpha"]),
                    "C": self.unit("C", alive="true"),
                    "D": self.unit("D"),
                },
                "capacity": {"gpu": 3},
            }
        )
        code, report = await h.admin(base, "/llmux/reload")
        self.assertEqual(code, 200)
        self.assertEqual(
            {k: report[k] for k in ("added", "removed", "changed", "unchanged")},
            {"added": ["D"], "removed": ["B"], "changed": ["C"], "unchanged": ["A"]},
        )
        for inFlight in (stream, changing, leaving):
            await inFlight.done
            self.assertTrue(inFlight.complete)
        response = await h.post(base + "/v1/chat/completions", {"model": "B"})
        self.assertEqual(response.code, 404)
        await response.content()
        self.assertEqual((await h.chat(base, "alpha"))["model"], "A")
        self.assertEqual((await h.chat(base, "D"))["model"], "D")
        self.assertEqual((await h.chat(base, "C"))["model"], "C")
        hooks = h.hooks()
        self.assertEqual(hooks.count("wake A"), 1)
        self.assertNotIn("sleep A", hooks)
        self.assertIn("sleep B", hooks)
        self.assertIn("sleep C", hooks)
        self.assertEqual(hooks.count("wake C"), 2)

    async def test_invalid(self) -> None:
        """
        An invalid file changes nothing: 400 with the one-line error.
        """
        h = self.h
        base = h.startFile({"models": {"A": self.model("A")}})
        path = h.directory.child("config.yaml")
        path.setContent(b"models: {A: {port: 0, wake: w, sleep: s, alive: a}}\n")
        code, body = await h.admin(base, "/llmux/reload")
        self.assertEqual(code, 400)
        self.assertEqual(
            body["error"]["message"],
            f"{path.path}: models.A.port: must be from 1 to 65535, not 0",
        )
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        [event] = self.events.named("reload_failed")
        self.assertIn("models.A.port", event["error"])

    async def test_capacityChanged(self) -> None:
        """
        A changed capacity table needs a restart: 400, nothing changed.
        """
        h = self.h
        base = h.startFile({"models": {"A": self.model("A")}, "capacity": {"gpu": 1}})
        h.write({"models": {"A": self.model("A")}, "capacity": {"gpu": 2}})
        code, body = await h.admin(base, "/llmux/reload")
        self.assertEqual(code, 400)
        self.assertIn("capacity: changed: restart llmux", body["error"]["message"])

    async def test_sighup(self) -> None:
        """
        SIGHUP reloads the file.
        """
        h = self.h
        base = h.startFile({"models": {"A": self.model("A")}})
        h.write({"models": {"A": self.model("A"), "D": self.model("D")}})
        os.kill(os.getpid(), signal.SIGHUP)
        await h.until(lambda: self.events.named("config_reloaded"))
        self.assertEqual((await h.chat(base, "D"))["model"], "D")

    async def test_noFile(self) -> None:
        """
        A service built without a file has nothing to reload: 400.
        """
        base = self.h.start({"A": self.model("A")})
        code, body = await self.h.admin(base, "/llmux/reload")
        self.assertEqual(
            (code, body["error"]["message"]),
            (400, "llmux was not started from a config file"),
        )
