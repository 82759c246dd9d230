"""
Tests for L{llmux.web.feedback}: loading feedback for streaming requests
that wait for their model, through the proxy over loopback (its timers on a
L{Clock}), and end to end with the official C{openai} client.
"""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from llmux.config import ModelConfig
from llmux.errors import (
    ModelCannotFit,
    ModelNotFound,
    ModelNotReady,
    RequestTimedOut,
    SwitchFailed,
)
from llmux.interfaces import IBackendHealth, ModelState, ModelView
from llmux.settings import Settings
from llmux.web import proxy as proxyModule
from llmux.web.errors import statusForError
from llmux.web.feedback import (
    backendErrorEvent,
    errorEvent,
    waitingText,
    wantsStream,
)
from llmux.web.proxy import ProxyResource
from llmux.web.resource import makeSite

from .test_e2e import Harness
from .test_web_proxy import (
    Backend,
    Collector,
    FakeHealth,
    FakeSlot,
    FakeSwitcher,
    ProxyTestCase,
    reactor,
)

# --- pure functions -------------------------------------------------------------


def _view(state: ModelState, queueDepth: int) -> ModelView:
    return ModelView(
        name="chat",
        state=state,
        placement=None,
        holds={},
        pinned=False,
        inFlight=0,
        queueDepth=queueDepth,
        oldestWaitSecs=None,
        awakeSince=None,
        idleExpiresInSecs=None,
    )


class TextTests(SynchronousTestCase):
    """
    The lines, the events and the C{stream} flag.
    """

    def test_wantsStream(self) -> None:
        """
        Only a JSON object whose C{stream} is C{true} asks for a stream.
        """
        self.assertTrue(wantsStream(b'{"model": "m", "stream": true}'))
        for body in (
            b'{"model": "m"}',
            b'{"model": "m", "stream": false}',
            b'{"model": "m", "stream": "true"}',
            b'{"model": "m", "stream": 1}',
            b"[true]",
            b"not json",
            b"",
            b"\xff\xfe",
        ):
            self.assertFalse(wantsStream(body), body)

    def test_waitingText(self) -> None:
        """
        The line names the model, its queue and the seconds waited, rounded;
        an awake model (busy) is waited for, not woken.
        """
        self.assertEqual(
            waitingText(_view(ModelState.WAKING, 2), "chat", 13.6),
            "llmux: waking chat (queue 2, 14 s)",
        )
        self.assertEqual(
            waitingText(_view(ModelState.AWAKE, 3), "chat", 0.2),
            "llmux: waiting for chat (queue 3, 0 s)",
        )
        self.assertEqual(
            waitingText(None, "a\r\nb", 2.0), "llmux: waking a  b (queue 0, 2 s)"
        )

    def test_errorEvent(self) -> None:
        """
        An llmux error is an OpenAI-shaped error event.
        """
        event = errorEvent(504, "Request timed out waiting for model")
        self.assertTrue(event.startswith(b"data: ") and event.endswith(b"\n\n"))
        self.assertEqual(
            json.loads(event[6:]),
            {
                "error": {
                    "message": "Request timed out waiting for model",
                    "type": "llmux_error",
                    "code": 504,
                }
            },
        )

    def test_backendErrorEvent(self) -> None:
        """
        A backend's error keeps its message and type, whatever JSON shape it
        has; a body that is not JSON is quoted; the code is the status.
        """

        def error(status: int, body: bytes, phrase: bytes = b"Bad") -> Any:
            event = backendErrorEvent(status, phrase, body)
            self.assertTrue(event.startswith(b"data: ") and event.endswith(b"\n\n"))
            return json.loads(event[6:])["error"]

        openai = b'{"error": {"message": "too long", "type": "invalid_request_error"}}'
        self.assertEqual(
            error(400, openai),
            {"message": "too long", "type": "invalid_request_error", "code": 400},
        )
        vllm = b'{"object": "error", "message": "no", "type": "BadRequestError"}'
        self.assertEqual(
            error(400, vllm), {"message": "no", "type": "BadRequestError", "code": 400}
        )
        self.assertEqual(
            error(500, b'{"error": "boom"}'),
            {"message": "boom", "type": "backend_error", "code": 500},
        )
        self.assertEqual(
            error(502, b"upstream <b>down</b>\n", b"Bad Gateway"),
            {
                "message": "Backend answered 502 Bad Gateway: upstream <b>down</b>",
                "type": "backend_error",
                "code": 502,
            },
        )
        self.assertEqual(
            error(503, b"", b"Service Unavailable")["message"],
            "Backend answered 503 Service Unavailable",
        )
        self.assertEqual(error(500, b"[1]")["message"], "Backend answered 500 Bad: [1]")
        self.assertEqual(len(error(500, b"x" * 5000)["message"]), 26 + 500)


# --- through the proxy ----------------------------------------------------------


class QueueSwitcher(FakeSwitcher):
    """
    A L{FakeSwitcher} that shows the models requests wait for as waking,
    with as many queued as wait.
    """

    def views(self) -> tuple[ModelView, ...]:
        waiting: dict[str, int] = {}
        for model, held in zip(self.heldFor, self.held, strict=True):
            if not held.called:
                waiting[model] = waiting.get(model, 0) + 1
        return tuple(
            attrs.evolve(view, state=ModelState.WAKING, queueDepth=waiting[view.name])
            if view.name in waiting
            else view
            for view in super().views()
        )

    @property
    def heldFor(self) -> list[str]:
        """
        The model each held C{acquire} waits for, in the order of C{held}.
        """
        return [model for model in self.calls if model not in self.errors][
            -len(self.held) :
        ]

    def grant(self, index: int = 0) -> FakeSlot:
        """
        Give the C{index}th held request its slot.
        """
        slot = FakeSlot(self.heldFor[index])
        self.slots.append(slot)
        self.held[index].callback(slot)
        return slot


class ErrorBackend(Resource):
    """
    A backend that answers every request with C{?status=} and a body in
    the C{?shape=} asked for: C{openai}, C{vllm} or C{text}.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        status = int(request.args.get(b"status", [b"400"])[0])
        shape = request.args.get(b"shape", [b"openai"])[0]
        request.setResponseCode(status)
        if shape == b"text":
            request.setHeader(b"Content-Type", b"text/plain")
            return b"it broke"
        request.setHeader(b"Content-Type", b"application/json")
        if shape == b"vllm":
            error: dict[str, Any] = {"object": "error", "message": "bad prompt"}
            error.update(type="BadRequestError", code=status)
            return json.dumps(error).encode()
        return json.dumps(
            {"error": {"message": "bad prompt", "type": "invalid_request_error"}}
        ).encode()


class FeedbackTestCase(ProxyTestCase):
    """
    L{ProxyTestCase} plus C{gamma} (an L{ErrorBackend}), with a
    L{QueueSwitcher} that holds every C{acquire}, C{loading_feedback} set to
    C{mode} and the proxy's timers on a L{Clock}.
    """

    mode = "comments"
    upstreamTimeout: float | None = 5.0

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        gammaPort = self.listen(Site(ErrorBackend()))
        gamma = ModelConfig(
            name="gamma", port=gammaPort, wake="true", sleep="true", alive="true"
        )
        alpha = attrs.evolve(self.config.models[0], aliases=("chat",))
        self.config = attrs.evolve(
            self.config,
            models=(alpha, *self.config.models[1:], gamma),
            loading_feedback=self.mode,
            upstream_timeout_secs=self.upstreamTimeout,
        )
        self.switcher = QueueSwitcher({m.name for m in self.config.models})
        self.switcher.hold = True
        pool = HTTPConnectionPool(reactor, persistent=False)
        proxy = ProxyResource(
            self.switcher,
            Settings(self.config),
            Agent(reactor, pool=pool),
            self.metrics,
            self.clock,
            health=self.health(),
        )
        self.port = self.listen(makeSite(proxy))
        # Run first (cleanups run last to first): when the test is over.
        self.addCleanup(self.assertNoTimers)

    def assertNoTimers(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def stream(
        self, path: str, model: str, stream: object = True
    ) -> Deferred[IResponse]:
        """
        POST a chat request naming C{model} with C{"stream": stream}.
        """
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        }
        return self.http.post(
            self.url(path),
            data=json.dumps(body).encode(),
            headers=Headers({b"Content-Type": [b"application/json"]}),
            unbuffered=True,
        )

    async def opened(self, path: str, model: str) -> tuple[IResponse, Collector]:
        """
        Start a streaming request that waits for C{model}; its response,
        started, and the collector of its body.
        """
        acquiring = self.switcher.acquiring.wait()
        requesting = self.stream(path, model)
        await acquiring
        response = await requesting
        self.assertEqual(response.code, 200)
        headers = response.headers
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/event-stream"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        self.assertIsNone(headers.getRawHeaders(b"content-length"))
        collector = Collector()
        response.deliverBody(collector)
        return response, collector

    async def received(self, collector: Collector, needle: bytes) -> bytes:
        """
        Wait until the body holds C{needle}; the body so far.
        """
        while needle not in b"".join(collector.chunks):
            await collector.arrived.wait()
        return b"".join(collector.chunks)

    async def ended(self, collector: Collector) -> bytes:
        """
        Wait until the body ended cleanly; the whole body.
        """
        reason = await collector.ended
        self.assertIsInstance(reason, ResponseDone)
        return b"".join(collector.chunks)

    def answered(self, model: str, status: int) -> float:
        value = self.metrics.registry.get_sample_value(
            "llmux_requests_total", {"model": model, "status": str(status)}
        )
        return value or 0.0


def _comment(model: str, queue: int, secs: int) -> bytes:
    return b": llmux: waking %s (queue %d, %d s)\n\n" % (model.encode(), queue, secs)


_TOKENS = b"data: token 0\n\ndata: token 1\n\ndata: [DONE]\n\n"


class CommentsTests(FeedbackTestCase):
    """
    C{loading_feedback: comments}.
    """

    async def test_commentsThenStream(self) -> None:
        """
        A streaming request that waits gets its response at once, a comment
        at once and one every 2 s; once the slot comes, the backend's
        stream follows in the same response, and the slot is released once.
        """
        _, collector = await self.opened("/stream?count=2&delay=0.01", "alpha")
        await self.received(collector, _comment("alpha", 1, 0))
        self.clock.advance(1.9)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.1)
        await self.received(collector, _comment("alpha", 1, 2))
        self.clock.advance(2)
        await self.received(collector, _comment("alpha", 1, 4))
        slot = self.switcher.grant()
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 4 + 5)
        body = await self.ended(collector)
        expected = [_comment("alpha", 1, n) for n in (0, 2, 4)]
        self.assertEqual(body, b"".join(expected) + _TOKENS)
        await slot.released
        self.assertEqual(self.answered("alpha", 200), 1)

    async def test_queueAndAlias(self) -> None:
        """
        The line shows the model's queue, and the name the client used.
        """
        _, first = await self.opened("/stream?count=2&delay=0.01", "alpha")
        await self.received(first, _comment("alpha", 1, 0))
        self.clock.advance(1)
        _, second = await self.opened("/stream?count=2&delay=0.01", "chat")
        await self.received(second, _comment("chat", 2, 0))
        self.clock.advance(1)
        await self.received(first, _comment("alpha", 2, 2))
        self.switcher.grant(0)
        self.clock.advance(1)
        await self.received(second, _comment("chat", 1, 2))
        self.switcher.grant(1)
        await self.ended(first)
        self.assertTrue((await self.ended(second)).endswith(_TOKENS))

    async def test_fastPath(self) -> None:
        """
        A model that gives a slot at once: no feedback, no timer, and the
        body is not looked at again.
        """
        calls: list[object] = []
        self.patch(proxyModule, "startFeedback", lambda *a: calls.append(a))
        self.switcher.hold = False
        response = await self.stream("/stream?count=2&delay=0.01", "alpha")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(await treq.content(response), _TOKENS)
        self.assertEqual(calls, [])

    async def test_notStreaming(self) -> None:
        """
        A request that does not ask for a stream waits without an answer,
        then gets the backend's own.
        """
        for stream in (False, "true", None):
            acquiring = self.switcher.acquiring.wait()
            requesting = self.stream("/v1/chat/completions", "alpha", stream)
            await acquiring
            await deferLater(reactor, 0.05)
            self.assertNoResult(requesting)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.switcher.grant(-1)
            response = await requesting
            self.assertEqual(response.code, 201)
            echo = json.loads(await treq.content(response))
            self.assertEqual(json.loads(echo["body"])["stream"], stream)

    async def test_waitFails(self) -> None:
        """
        A wait that fails after the stream began ends it with an error event
        carrying llmux's message and the status it would have had; no
        Retry-After, nothing held.
        """
        errors = [
            RequestTimedOut("alpha", 30),
            ModelNotReady("alpha", "llmux is shutting down"),
            SwitchFailed("alpha", "wake exited 1"),
            ModelCannotFit("alpha", ("beta",), 5.0),
        ]
        for error in errors:
            response, collector = await self.opened("/stream", "alpha")
            await self.received(collector, _comment("alpha", 1, 0))
            self.clock.advance(2)
            await self.received(collector, _comment("alpha", 1, 2))
            self.switcher.held[-1].errback(error)
            status = statusForError(error)
            assert status is not None
            body = await self.ended(collector)
            self.assertEqual(
                body,
                _comment("alpha", 1, 0)
                + _comment("alpha", 1, 2)
                + errorEvent(status, str(error)),
            )
            self.assertIsNone(response.headers.getRawHeaders(b"retry-after"))
            self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.switcher.slots, [])
        self.assertEqual(self.answered("alpha", 503), 2)

    async def test_modelGone(self) -> None:
        """
        A model removed by a reload while the request waited: the error
        event says so, with a 404.
        """
        _, collector = await self.opened("/stream", "beta")
        self.switcher.held[0].errback(ModelNotFound("beta"))
        body = await self.ended(collector)
        self.assertTrue(body.endswith(errorEvent(404, "Model not found: beta")))

    async def test_backendError(self) -> None:
        """
        A backend that answers an error once the stream began: its message
        and type in an error event with its status as the code, and the
        stream ends (no C{[DONE]}).
        """
        for shape, kind, message in (
            (b"openai", "invalid_request_error", "bad prompt"),
            (b"vllm", "BadRequestError", "bad prompt"),
            (b"text", "backend_error", "Backend answered 400 Bad Request: it broke"),
        ):
            path = "/v1/chat/completions?status=400&shape=" + shape.decode()
            _, collector = await self.opened(path, "gamma")
            await self.received(collector, _comment("gamma", 1, 0))
            slot = self.switcher.grant(-1)
            body = await self.ended(collector)
            event = body[len(_comment("gamma", 1, 0)) :]
            self.assertTrue(event.startswith(b"data: ") and event.endswith(b"\n\n"))
            self.assertEqual(
                json.loads(event[6:]),
                {"error": {"message": message, "type": kind, "code": 400}},
            )
            await slot.released
        self.assertEqual(self.answered("gamma", 400), 3)

    async def test_backendUnreachable(self) -> None:
        """
        A backend that fails before answering: a 502 error event.
        """
        _, collector = await self.opened("/stream", "ghost")
        slot = self.switcher.grant()
        body = await self.ended(collector)
        event = json.loads(body[len(_comment("ghost", 1, 0)) + 6 :])
        self.assertEqual(event["error"]["code"], 502)
        self.assertEqual(event["error"]["type"], "llmux_error")
        self.assertTrue(event["error"]["message"].startswith("Backend error: "))
        await slot.released
        self.assertEqual(self.answered("ghost", 502), 1)

    async def test_backendTimesOut(self) -> None:
        """
        A backend that sends no headers in time after the stream began: a
        504 error event.
        """
        backend = self.backends["beta"]
        _, collector = await self.opened("/hang", "beta")
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        slot = self.switcher.grant()
        await arrived
        self.clock.advance(5)
        body = await self.ended(collector)
        self.assertTrue(
            body.endswith(errorEvent(504, "Backend timed out: no response within 5s"))
        )
        await disconnected
        await slot.released

    async def test_clientGoneWaiting(self) -> None:
        """
        A client that leaves while it waits: the timer stops, the wait is
        cancelled, and no slot is handed out or released.
        """
        _, collector = await self.opened("/stream", "alpha")
        await self.received(collector, _comment("alpha", 1, 0))
        cancelling = self.switcher.cancelling.wait()
        assert collector.transport is not None
        collector.transport.stopProducing()
        self.assertEqual(await cancelling, "alpha")
        # The fake switcher told of the cancellation from within it.
        await deferLater(reactor, 0)
        self.assertEqual(self.switcher.cancelled, ["alpha"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.switcher.slots, [])

    async def test_clientGoneAtBackend(self) -> None:
        """
        A client that leaves after the slot came, before the backend
        answered: the backend request is dropped, the slot released once,
        no timer left.
        """
        backend = self.backends["beta"]
        _, collector = await self.opened("/hang", "beta")
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        slot = self.switcher.grant()
        await arrived
        assert collector.transport is not None
        collector.transport.stopProducing()
        await disconnected
        await slot.released
        await deferLater(reactor, 0.05)
        self.assertEqual(slot.releases, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_clientGoneMidStream(self) -> None:
        """
        A client that leaves while the backend's stream is relayed: the
        backend connection closes and the slot is released once.
        """
        backend = self.backends["alpha"]
        _, collector = await self.opened("/stream?count=1000&delay=0.01", "alpha")
        disconnected = backend.disconnects.wait()
        slot = self.switcher.grant()
        await self.received(collector, b"data: token 1\n\n")
        assert collector.transport is not None
        collector.transport.stopProducing()
        await disconnected
        await slot.released
        self.assertEqual(slot.releases, 1)


class RetryTests(FeedbackTestCase):
    """
    A backend that refused the request: the model is checked, and the
    request waits again, with its feedback resumed.
    """

    def health(self) -> IBackendHealth:
        self.fakeHealth = FakeHealth()
        return self.fakeHealth

    async def test_resumed(self) -> None:
        """
        While the request waits for its model again, lines go on; then the
        backend's stream follows.
        """
        _, collector = await self.opened("/stream?count=2&delay=0.01", "ghost")
        await self.received(collector, _comment("ghost", 1, 0))
        asked = self.fakeHealth.asked.wait()
        self.clock.advance(1)
        first = self.switcher.grant()
        await asked
        self.assertEqual(self.clock.getDelayedCalls(), [])
        await first.released
        acquiring = self.switcher.acquiring.wait()
        self.fakeHealth.checks[0].callback(False)
        await acquiring
        await self.received(collector, _comment("ghost", 1, 1))
        self.clock.advance(2)
        await self.received(collector, _comment("ghost", 1, 3))
        ghost = self.config.model("ghost")
        assert ghost is not None
        self.listen(Site(Backend("ghost")), ghost.port)
        second = self.switcher.grant(-1)
        body = await self.ended(collector)
        self.assertTrue(body.endswith(_TOKENS))
        await second.released
        self.assertEqual(self.switcher.calls, ["ghost", "ghost"])


class ReasoningTests(FeedbackTestCase):
    """
    C{loading_feedback: reasoning}.
    """

    mode = "reasoning"

    def chunks(self, body: bytes) -> list[Any]:
        """
        The events of an SSE body, as JSON (C{[DONE]} as a string).
        """
        events = []
        for event in body.split(b"\n\n")[:-1]:
            self.assertTrue(event.startswith(b"data: "), event)
            data = event[6:]
            events.append(data.decode() if data == b"[DONE]" else json.loads(data))
        return events

    async def test_chunks(self) -> None:
        """
        The lines are C{chat.completion.chunk}s whose delta holds them as
        C{reasoning_content}, at once and every 2 s; the backend's stream
        follows.
        """
        path = "/stream/v1/chat/completions?count=2&delay=0.01"
        _, collector = await self.opened(path, "chat")
        await self.received(collector, b"\n\n")
        self.clock.advance(2)
        await self.received(collector, b"(queue 1, 2 s)")
        self.switcher.grant()
        body = await self.ended(collector)
        self.assertTrue(body.endswith(_TOKENS))
        first, second = self.chunks(body[: -len(_TOKENS)])
        self.assertIsInstance(first["id"], str)
        self.assertTrue(first["id"])
        self.assertEqual(first["id"], second["id"])
        self.assertEqual(
            first,
            {
                "id": first["id"],
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "chat",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "reasoning_content": "llmux: waking chat (queue 1, 0 s)\n"
                        },
                        "finish_reason": None,
                    }
                ],
            },
        )
        self.assertEqual(second["created"], 2)
        self.assertEqual(
            second["choices"][0]["delta"]["reasoning_content"],
            "llmux: waking chat (queue 1, 2 s)\n",
        )

    async def test_otherEndpoints(self) -> None:
        """
        A streaming request to another endpoint (legacy completions) gets
        comments: its chunks have another shape.
        """
        _, collector = await self.opened("/stream/v1/completions?count=2", "alpha")
        await self.received(collector, _comment("alpha", 1, 0))
        self.switcher.grant()
        body = await self.ended(collector)
        self.assertEqual(body, _comment("alpha", 1, 0) + _TOKENS)

    async def test_waitFails(self) -> None:
        """
        A failed wait ends the stream with an error event.
        """
        _, collector = await self.opened("/v1/chat/completions", "alpha")
        await self.received(collector, b"\n\n")
        self.switcher.held[0].errback(RequestTimedOut("alpha", 30))
        body = await self.ended(collector)
        [chunk, error] = self.chunks(body)
        self.assertEqual(chunk["object"], "chat.completion.chunk")
        self.assertEqual(
            error,
            {
                "error": {
                    "message": "Request timed out waiting for model",
                    "type": "llmux_error",
                    "code": 504,
                }
            },
        )


class OffTests(FeedbackTestCase):
    """
    C{loading_feedback: off}.
    """

    mode = "off"

    async def test_untouched(self) -> None:
        """
        A streaming request waits without an answer, then gets the
        backend's stream as it is.
        """
        acquiring = self.switcher.acquiring.wait()
        requesting = self.stream("/stream?count=2&delay=0.01", "alpha")
        await acquiring
        await deferLater(reactor, 0.05)
        self.assertNoResult(requesting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.switcher.grant()
        response = await requesting
        self.assertEqual(await treq.content(response), _TOKENS)


# --- end to end, with the official client ---------------------------------------


class OfficialClientTests(TestCase):
    """
    The official C{openai} client, streaming from a real llmux service whose
    model takes 2.5 s to wake.
    """

    timeout = 30

    def start(self, mode: str, wake: str = "sleep 2.5") -> Any:
        """
        Start llmux with C{loading_feedback: mode} and a model C{A} whose
        wake hook runs C{wake}; an C{openai} client for it.
        """
        from openai import OpenAI

        h = Harness(self)
        base = h.start(
            {"A": h.recordingModel(h.backend("A", chunkDelay=0.01), wake=wake)},
            {"loading_feedback": mode},
        )
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        self.addCleanup(client.close)
        return client

    def chat(self, client: Any) -> list[Any]:
        """
        A streaming chat completion with C{A}: its chunks' deltas.
        """
        chunks = client.chat.completions.create(
            model="A", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        return [c.choices[0].delta for c in chunks if c.choices]

    async def test_comments(self) -> None:
        """
        With comments, the client sees the normal content and no error.
        """
        client = self.start("comments")
        started = time.monotonic()
        deltas = await deferToThread(self.chat, client)
        self.assertGreater(time.monotonic() - started, 2.4)
        content = "".join(d.content or "" for d in deltas)
        self.assertIn("A", content)
        self.assertEqual([_reasoning(d) for d in deltas if _reasoning(d)], [])

    async def test_reasoning(self) -> None:
        """
        With reasoning, the client sees the lines as C{reasoning_content},
        then the content.
        """
        client = self.start("reasoning")
        deltas = await deferToThread(self.chat, client)
        reasoning = [_reasoning(d) for d in deltas if _reasoning(d)]
        self.assertGreaterEqual(len(reasoning), 2)
        self.assertEqual(reasoning[0], "llmux: waking A (queue 1, 0 s)\n")
        self.assertEqual(reasoning[1], "llmux: waking A (queue 1, 2 s)\n")
        firstContent = next(i for i, d in enumerate(deltas) if d.content)
        self.assertGreaterEqual(firstContent, len(reasoning))
        self.assertIn("A", "".join(d.content or "" for d in deltas))

    async def test_failedWait(self) -> None:
        """
        A wake that fails after the feedback began: the client raises an
        error with llmux's message instead of hanging.
        """
        from openai import APIError

        client = self.start("comments", wake="sleep 2.5\nexit 1")
        error = await self.assertFailure(deferToThread(self.chat, client), APIError)
        self.assertIn("Hook failed for A", error.message)
        self.assertEqual(error.body["code"], 500)
        self.assertEqual(error.body["type"], "llmux_error")


def _reasoning(delta: Any) -> str | None:
    """
    The C{reasoning_content} of an C{openai} delta (an extra field).
    """
    extra = delta.model_extra or {}
    value = extra.get("reasoning_content")
    return value if isinstance(value, str) else None
