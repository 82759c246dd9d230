"""
End-to-end tests of llmux's lifecycle with real hooks and real backend
processes: adopting a model that is already awake, noticing a backend that
died, and shutting down gracefully.
"""

from __future__ import annotations

import os
import signal

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from llmux.switcher import Active, Idle

from .test_e2e import DemoBackends, Harness, errorOf, llmuxError


class AdoptionTests(TestCase):
    """
    Restarting llmux does not cost a model reload.
    """

    timeout = 60

    async def test_adoptRunningBackend(self) -> None:
        """
        A backend already up when llmux starts is adopted: it serves the
        first request without a wake, and the same process keeps running.
        """
        h = Harness(self)
        backends = DemoBackends(self, h)
        models = {"A": backends.model("A"), "B": backends.model("B")}
        self.assertEqual(await backends.run("B", "wake"), 0)
        pid = backends.pid("B")
        base = h.start(models)
        assert h.service is not None
        switcher = h.service.switcher
        await h.until(lambda: switcher.state == Active("B"))
        self.assertEqual((await h.chat(base, "B"))["model"], "B")
        self.assertEqual(backends.pid("B"), pid, "B was not restarted")


class DeadBackendTests(TestCase):
    """
    A backend that crashes while active is noticed and woken again.
    """

    timeout = 60

    async def test_crashedBackendIsWokenAgain(self) -> None:
        """
        After the active model's backend is killed, failing alive checks mark
        it dead, and the next request wakes it again instead of getting 502s.
        """
        h = Harness(self)
        backends = DemoBackends(self, h)
        base = h.start(
            {"A": backends.model("A")},
            {"alive_interval_secs": 0.2, "alive_failures": 2},
        )
        assert h.service is not None
        switcher = h.service.switcher
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        os.kill(backends.pid("A"), signal.SIGKILL)
        await h.until(lambda: switcher.state == Idle())
        self.assertIn("alive hook failed 2 time(s)", switcher.lastError or "")
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(switcher.state, Active("A"))


class ShutdownTests(TestCase):
    """
    Stopping llmux: refuse the waiting, finish the running, optionally sleep.
    """

    timeout = 60

    async def test_gracefulShutdown(self) -> None:
        """
        On stop, a request queued behind a drain gets 503 JSON, the stream
        in flight completes in full, and with sleep_on_shutdown the active
        model's sleep hook runs last.
        """
        h = Harness(self)
        models = {
            "A": h.recordingModel(h.backend("A", chunkDelay=0.1, chunks=10)),
            "B": h.recordingModel(h.backend("B")),
        }
        base = h.start(models, {"sleep_on_shutdown": True, "adopt_running": False})
        assert h.service is not None
        collector = await h.stream(base, "A")
        queued = Deferred.fromCoroutine(
            h.post(base + "/v1/completions", {"model": "B"})
        )
        await h.until(
            lambda: h.service is not None and h.service.switcher.queueDepths()["B"] == 1
        )
        stopping = h.service.stopService()
        refused = await queued
        self.assertEqual(
            await errorOf(refused),
            (
                503,
                b"application/json",
                llmuxError("Model not ready: B (llmux is shutting down)"),
            ),
        )
        await collector.done
        self.assertTrue(collector.complete, collector.reason)
        self.assertTrue(collector.body.endswith(b"data: [DONE]\n\n"))
        await stopping
        self.assertEqual(h.hooks(), ["wake A", "sleep A"])
