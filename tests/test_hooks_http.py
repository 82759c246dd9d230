"""
Tests for hooks made of HTTP steps (L{llmux.hooks.http}), run by the
L{HookRunner} against the fake backend playing vLLM and SGLang over
loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llmux.config import ModelConfig, parseConfig
from llmux.hooks import HookRunner
from llmux.testing.fakebackend import makeSite

from .helpers import freePort

reactor: Any = _reactor


class VLLMStepsTests(TestCase):
    """
    The C{vllm} preset's hooks against a server playing vLLM.
    """

    timeout = 20

    async def serve(self, backend: str) -> tuple[int, Any]:
        site = makeSite("m", reactor, backend=backend)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        return port.getHost().port, site.backend

    def model(self, port: int, **settings: Any) -> ModelConfig:
        return parseConfig({"models": {"m": {"port": port, **settings}}}).models[0]

    async def test_level1(self) -> None:
        """
        Sleep level 1 and a wake make exactly vLLM's calls, and the server
        is asleep and awake in turn; alive tells the two apart.
        """
        port, backend = await self.serve("vllm")
        model = self.model(port, backend="vllm")
        runner = HookRunner(reactor)
        outcomes = [
            (await runner.run(model, hook)).succeeded
            for hook in ("sleep", "alive", "wake", "alive")
        ]
        self.assertEqual(outcomes, [True, False, True, True])
        self.assertEqual(
            [call.line for call in backend.calls],
            [
                "POST /sleep?level=1",
                "GET /health",
                "GET /is_sleeping",
                "POST /wake_up",
                "GET /health",
                "GET /is_sleeping",
            ],
        )

    async def test_level2(self) -> None:
        """
        Sleep level 2 discards the weights; the wake reloads them and resets
        the prefix cache, after which the server generates again.
        """
        port, backend = await self.serve("vllm")
        model = self.model(port, backend="vllm", sleep_level=2)
        runner = HookRunner(reactor)
        self.assertTrue((await runner.run(model, "sleep")).succeeded)
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        self.assertEqual(
            [call.line for call in backend.calls],
            [
                "POST /sleep?level=2",
                "POST /wake_up",
                "POST /collective_rpc",
                "POST /reset_prefix_cache",
            ],
        )
        self.assertEqual(backend.calls[2].json, {"method": "reload_weights"})
        self.assertFalse(backend.engine.isSleeping)
        self.assertFalse(backend.engine.weightsDiscarded)

    async def test_sglang(self) -> None:
        """
        SGLang's memory is released and resumed.
        """
        port, backend = await self.serve("sglang")
        model = self.model(port, backend="sglang")
        runner = HookRunner(reactor)
        self.assertTrue((await runner.run(model, "sleep")).succeeded)
        self.assertTrue((await runner.run(model, "wake")).succeeded)
        self.assertEqual(
            [call.line for call in backend.calls],
            ["POST /release_memory_occupation", "POST /resume_memory_occupation"],
        )

    async def test_failedStep(self) -> None:
        """
        The hook stops at the first step whose status is unexpected, and its
        error names the step, the status and the answer.
        """
        port, backend = await self.serve("vllm")
        model = self.model(
            port,
            wake=[
                {"method": "POST", "path": "/wake_up"},
                {"method": "POST", "path": "/collective_rpc", "json": {"method": "x"}},
                {"method": "POST", "path": "/reset_prefix_cache"},
            ],
            sleep="true",
            alive="true",
        )
        result = await HookRunner(reactor).run(model, "wake")
        self.assertFalse(result.succeeded)
        self.assertRegex(
            result.describeFailure(), r"^step 2 \(POST /collective_rpc\): status 400: "
        )
        self.assertEqual(len(backend.calls), 2)

    async def test_refused(self) -> None:
        """
        A step that cannot connect fails the hook, saying so.
        """
        model = self.model(freePort(), wake=["/health"], sleep="true", alive="true")
        result = await HookRunner(reactor).run(model, "wake")
        self.assertFalse(result.succeeded)
        self.assertRegex(
            result.describeFailure(), r"^step 1 \(GET /health\): .*refused"
        )

    async def test_timeout(self) -> None:
        """
        A step that gets no answer within its time fails the hook as timed
        out, and the connection is closed.
        """
        hanging = _Hang()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(hanging)
        )
        self.addCleanup(port.stopListening)
        model = self.model(
            port.getHost().port,
            wake=[{"path": "/hang", "timeout_secs": 0.2}],
            sleep="true",
            alive="true",
        )
        result = await HookRunner(reactor).run(model, "wake")
        self.assertTrue(result.timedOut)
        self.assertEqual(
            result.describeFailure(),
            f"timed out after {result.durationSecs:.1f}s:"
            " step 1 (GET /hang): timed out after 0.2s",
        )
        await hanging.gone

    async def test_expectJSON(self) -> None:
        """
        C{expect_json} compares keys of the answer.
        """
        port, backend = await self.serve("vllm")
        model = self.model(
            port,
            alive=[{"path": "/is_sleeping", "expect_json": {"is_sleeping": True}}],
            wake="true",
            sleep="true",
        )
        result = await HookRunner(reactor).run(model, "alive")
        self.assertEqual(
            result.describeFailure(),
            "step 1 (GET /is_sleeping): is_sleeping is false, expected true",
        )


class _Hang(Resource):
    """
    Answers nothing, ever; C{gone} fires when the client hangs up.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[None] = Deferred()

    def render(self, request: Request) -> int:
        request.notifyFinish().addBoth(lambda _: self.gone.callback(None))
        return NOT_DONE_YET
