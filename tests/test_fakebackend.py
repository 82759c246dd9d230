"""
Tests for L{llmux.testing.fakebackend}.

The fake backend is served on a loopback port of the real reactor and spoken
to with treq over non-persistent connections, with the official C{openai}
client, and as a real subprocess. Its timers run on a clock that records what
it schedules, so a test can check that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseNeverReceived,
)
from twisted.web.iweb import IResponse
from twisted.web.server import Site

from llmux.testing.fakebackend import FakeBackend, main, makeSite

from .helpers import freePort

try:
    import openai
except ImportError:  # pragma: no cover
    openai = None

CHUNK_DELAY = 0.05
CHUNKS = 4
TEXT = "Hello from llama: token 1 token 2 token 3"
SRC = FilePath(__file__).parent().sibling("src").path


class RecordingClock:
    """
    The real reactor's time, remembering every call scheduled on it.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[float, IDelayedCall]] = []

    def seconds(self) -> float:
        """
        The reactor's time.
        """
        return reactor.seconds()

    def callLater(self, delay: float, f: Callable[..., Any], *a: Any) -> IDelayedCall:
        """
        Schedule on the reactor, and remember the call.
        """
        call = reactor.callLater(delay, f, *a)
        self.calls.append((delay, call))
        return call

    def pending(self, delay: float) -> list[IDelayedCall]:
        """
        The calls scheduled C{delay} seconds ahead that have not run yet.
        """
        return [call for d, call in self.calls if d == delay and call.active()]


class EventCollector(Protocol):
    """
    Collect a response body as Server-Sent Events, with arrival times.

    @ivar stopAfter: drop the connection after this many events, if set.
    """

    def __init__(self, stopAfter: int | None = None) -> None:
        self.events: list[tuple[float, bytes]] = []
        self.stopAfter = stopAfter
        self.reason: Failure | None = None
        self.finished: Deferred[BaseException] = Deferred()
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        """
        Split complete events off the buffer.
        """
        self._buffer += data
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            self.events.append((reactor.seconds(), event))
            if self.stopAfter is not None and len(self.events) == self.stopAfter:
                self.transport.stopProducing()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """
        Fire L{finished} with why the body ended (an exception).
        """
        self.reason = reason
        self.finished.callback(reason.value)

    def payloads(self) -> list[Any]:
        """
        The JSON of each C{data:} event, C{"[DONE]"} as itself.
        """
        result = []
        for _, event in self.events:
            assert event.startswith(b"data: "), event
            data = event[len(b"data: ") :]
            result.append("[DONE]" if data == b"[DONE]" else json.loads(data))
        return result


class ByteCounter(Protocol):
    """
    Count a response body's bytes; optionally pause at the first of them.
    """

    def __init__(self, pauseAtFirst: bool = False) -> None:
        self.received = 0
        self.data = b""
        self.pauseAtFirst = pauseAtFirst
        self.firstData: Deferred[None] = Deferred()
        self.finished: Deferred[BaseException] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """
        Count; keep the first bytes for inspection.
        """
        if not self.received:
            self.data = data[:1000]
            if self.pauseAtFirst:
                self.transport.pauseProducing()
            self.firstData.callback(None)
        self.received += len(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """
        Fire L{finished} with why the body ended (an exception).
        """
        self.finished.callback(reason.value)


def subprocessEnv() -> dict[str, str]:
    """
    This process's environment, with llmux's C{src} on C{PYTHONPATH}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


class LoopbackMixin:
    """
    Serve a site on a loopback port; talk to it with a non-persistent client.
    """

    addCleanup: Callable[..., None]

    def serve(self, site: Site) -> str:
        """
        Listen with C{site} and return its base URL. On cleanup, stop
        listening and wait until every server-side connection has closed.

        L{connections} tracks the server's connections, L{http} is a client.
        """
        self.connections = WrappingFactory(site)
        port = reactor.listenTCP(0, self.connections, interface="127.0.0.1")
        self.addCleanup(self.waitForClose, self.connections)
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        return f"http://127.0.0.1:{port.getHost().port}"

    async def waitForClose(
        self, connections: WrappingFactory, limit: float = 2.0
    ) -> None:
        """
        Wait up to C{limit} seconds for the server's C{connections} to close,
        then abort any left (and wait for that).
        """
        for _ in range(int(limit / 0.01)):
            if not connections.protocols:
                return
            await deferLater(reactor, 0.01)
        for protocol in list(connections.protocols):
            protocol.transport.abortConnection()
        while connections.protocols:
            await deferLater(reactor, 0.01)


class FakeBackendTests(LoopbackMixin, TestCase):
    """
    The HTTP surface of the fake backend.
    """

    timeout = 10

    def setUp(self) -> None:
        self.clock = RecordingClock()
        self.url = self.serve(makeSite("llama", self.clock, CHUNK_DELAY, CHUNKS))

    async def request(
        self, method: str, path: str, body: object = None, **kw: Any
    ) -> IResponse:
        """
        Send a request, with C{body} as JSON if given.
        """
        if body is not None:
            kw["data"] = json.dumps(body).encode("utf-8")
            kw.setdefault("headers", {})["Content-Type"] = ["application/json"]
        return await self.http.request(method, self.url + path, unbuffered=True, **kw)

    async def json(self, response: IResponse, code: int = 200) -> Any:
        """
        The response's JSON body, after checking its status and content type.
        """
        body = await response.content()
        self.assertEqual((response.code, body), (code, body))
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        return json.loads(body)

    async def stream(
        self, path: str, body: object, stopAfter: int | None = None
    ) -> EventCollector:
        """
        Send a request and collect the events of its streamed answer.
        """
        response = await self.request("POST", path, body)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream"]
        )
        collector = EventCollector(stopAfter)
        response.deliverBody(collector)
        await collector.finished
        return collector

    async def assertError(self, response: IResponse, code: int) -> str:
        """
        The response is an OpenAI-style JSON error with status C{code}; return
        its message.
        """
        body = await self.json(response, code)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        message: str = body["error"]["message"]
        return message

    async def test_chatCompletion(self) -> None:
        """
        Without C{stream}, a chat completion is one OpenAI C{chat.completion}
        document, whose text names the model.
        """
        messages = [{"role": "user", "content": "hello there"}]
        body = await self.json(
            await self.request(
                "POST", "/v1/chat/completions", {"model": "x", "messages": messages}
            )
        )
        self.assertEqual(body["object"], "chat.completion")
        self.assertTrue(body["id"].startswith("chatcmpl-"))
        self.assertIsInstance(body["created"], int)
        self.assertEqual(body["model"], "llama")
        [choice] = body["choices"]
        self.assertEqual(choice["index"], 0)
        self.assertEqual(choice["message"], {"role": "assistant", "content": TEXT})
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(
            body["usage"],
            {"prompt_tokens": 3, "completion_tokens": CHUNKS, "total_tokens": 7},
        )

    async def test_completion(self) -> None:
        """
        Without C{stream}, a text completion is one C{text_completion}.
        """
        body = await self.json(
            await self.request("POST", "/v1/completions", {"prompt": "once upon"})
        )
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual(body["model"], "llama")
        [choice] = body["choices"]
        self.assertEqual((choice["text"], choice["finish_reason"]), (TEXT, "stop"))
        self.assertEqual(body["usage"]["prompt_tokens"], 2)
        self.assertEqual(body["usage"]["completion_tokens"], CHUNKS)

    async def test_chatStream(self) -> None:
        """
        With C{stream}, a chat completion is SSE: a role chunk, one chunk per
        piece of text, a final chunk with the finish reason, then C{[DONE]},
        and the response ends cleanly.
        """
        collector = await self.stream(
            "/v1/chat/completions", {"stream": True, "messages": []}
        )
        self.assertTrue(collector.reason.check(ResponseDone), collector.reason)
        events = collector.payloads()
        self.assertEqual(len(events), 1 + CHUNKS + 1 + 1)
        self.assertEqual(events[-1], "[DONE]")
        chunks = events[:-1]
        for chunk in chunks:
            self.assertEqual(chunk["object"], "chat.completion.chunk")
            self.assertEqual(chunk["model"], "llama")
            self.assertEqual(chunk["id"], chunks[0]["id"])
        first, *middle, last = (c["choices"][0] for c in chunks)
        self.assertEqual(first["delta"], {"role": "assistant", "content": ""})
        self.assertEqual("".join(c["delta"]["content"] for c in middle), TEXT)
        self.assertEqual([c["finish_reason"] for c in middle], [None] * CHUNKS)
        self.assertEqual((last["delta"], last["finish_reason"]), ({}, "stop"))

    async def test_streamEndsCleanly(self) -> None:
        """
        A complete stream ends with L{ResponseDone}.
        """
        collector = await self.stream("/v1/completions", {"stream": True})
        reason = await collector.finished
        self.assertIsInstance(reason, ResponseDone)

    async def test_chatStreamSpreadOut(self) -> None:
        """
        The text chunks arrive one chunk delay apart, not all at once.
        """
        collector = await self.stream("/v1/chat/completions", {"stream": True})
        times = [t for t, _ in collector.events[: 1 + CHUNKS]]
        gaps = [later - earlier for earlier, later in pairwise(times)]
        self.assertEqual(len(gaps), CHUNKS)
        for gap in gaps:
            self.assertGreater(gap, CHUNK_DELAY / 2)

    async def test_completionStream(self) -> None:
        """
        A streamed text completion: one chunk per piece of text, a final one
        with the finish reason, then C{[DONE]}.
        """
        collector = await self.stream("/v1/completions", {"stream": True})
        *chunks, done = collector.payloads()
        self.assertEqual(done, "[DONE]")
        self.assertEqual(len(chunks), CHUNKS + 1)
        choices = [c["choices"][0] for c in chunks]
        self.assertEqual("".join(c["text"] for c in choices), TEXT)
        self.assertEqual([c["finish_reason"] for c in choices][-2:], [None, "stop"])
        self.assertEqual({c["object"] for c in chunks}, {"text_completion"})

    async def test_streamUsage(self) -> None:
        """
        C{stream_options.include_usage} adds a usage chunk before C{[DONE]}.
        """
        collector = await self.stream(
            "/v1/chat/completions",
            {"stream": True, "stream_options": {"include_usage": True}},
        )
        *_, usage, done = collector.payloads()
        self.assertEqual(done, "[DONE]")
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["completion_tokens"], CHUNKS)

    async def test_maxTokens(self) -> None:
        """
        C{max_tokens} below the chunk count cuts the answer short, with
        finish reason C{length}.
        """
        body = await self.json(
            await self.request("POST", "/v1/chat/completions", {"max_tokens": 2})
        )
        [choice] = body["choices"]
        self.assertEqual(choice["message"]["content"], "Hello from llama: token 1")
        self.assertEqual(choice["finish_reason"], "length")
        self.assertEqual(body["usage"]["completion_tokens"], 2)

    async def test_maxTokensAboveChunks(self) -> None:
        """
        C{max_tokens} above the chunk count changes nothing.
        """
        body = await self.json(
            await self.request("POST", "/v1/completions", {"max_tokens": 100})
        )
        self.assertEqual(body["choices"][0]["text"], TEXT)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")

    async def test_maxTokensStream(self) -> None:
        """
        C{max_tokens} (or C{max_completion_tokens}) caps the streamed chunks.
        """
        for key in ("max_tokens", "max_completion_tokens"):
            collector = await self.stream(
                "/v1/chat/completions", {"stream": True, key: 1}
            )
            events = collector.payloads()
            self.assertEqual(len(events), 1 + 1 + 1 + 1)
            self.assertEqual(
                events[1]["choices"][0]["delta"]["content"], "Hello from llama:"
            )
            self.assertEqual(events[2]["choices"][0]["finish_reason"], "length")

    async def test_badMaxTokens(self) -> None:
        """
        A C{max_tokens} that is not a non-negative integer is a 400.
        """
        for value in ("3", -1, 1.5, True):
            response = await self.request(
                "POST", "/v1/completions", {"max_tokens": value}
            )
            self.assertIn("max_tokens", await self.assertError(response, 400))

    async def test_badStream(self) -> None:
        """
        A C{stream} that is not a boolean is a 400.
        """
        response = await self.request("POST", "/v1/completions", {"stream": "yes"})
        self.assertIn("stream", await self.assertError(response, 400))

    async def test_badJSON(self) -> None:
        """
        A body that is not JSON, or not a JSON object, is a 400 JSON error.
        """
        for data in (b"{not json", b"[1, 2]", b""):
            response = await self.request("POST", "/v1/chat/completions", data=data)
            await self.assertError(response, 400)

    async def test_models(self) -> None:
        """
        C{GET /v1/models} lists the one model, OpenAI-style.
        """
        body = await self.json(await self.request("GET", "/v1/models"))
        self.assertEqual(body["object"], "list")
        [model] = body["data"]
        self.assertEqual((model["id"], model["object"]), ("llama", "model"))

    async def test_health(self) -> None:
        """
        C{GET /health} answers C{{"status": "ok"}}.
        """
        body = await self.json(await self.request("GET", "/health"))
        self.assertEqual(body, {"status": "ok"})

    async def test_unknownPath(self) -> None:
        """
        An unknown path is a 404 JSON error naming it.
        """
        response = await self.request("GET", "/v2/nothing?x=1")
        self.assertIn("/v2/nothing", await self.assertError(response, 404))

    async def test_wrongMethod(self) -> None:
        """
        A known path with the wrong method is a 405 JSON error with C{Allow}.
        """
        response = await self.request("GET", "/v1/chat/completions")
        await self.assertError(response, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])

    async def test_modelHeader(self) -> None:
        """
        Every answer says which backend gave it in C{X-Fake-Backend}.
        """
        response = await self.request("GET", "/nowhere")
        await response.content()
        self.assertEqual(response.headers.getRawHeaders("x-fake-backend"), ["llama"])

    async def test_echo(self) -> None:
        """
        C{/echo/...} returns the method, path with query, headers with every
        value, and body that the backend received.
        """
        response = await self.request(
            "PUT",
            "/echo/a/b?x=1&y=%20z",
            data=b'{"model": "llama"}',
            headers={"X-Foo": ["one", "two"], "Authorization": ["Bearer k"]},
        )
        body = await self.json(response)
        self.assertEqual(body["method"], "PUT")
        self.assertEqual(body["path"], "/echo/a/b?x=1&y=%20z")
        self.assertEqual(body["headers"]["x-foo"], ["one", "two"])
        self.assertEqual(body["headers"]["authorization"], ["Bearer k"])
        self.assertEqual(body["headers"]["host"], [self.url.split("//")[1]])
        self.assertEqual(body["body"], '{"model": "llama"}')

    async def test_echoAnyMethod(self) -> None:
        """
        C{/echo} takes any method, and works without a body.
        """
        for method in ("GET", "DELETE", "PATCH"):
            body = await self.json(await self.request(method, "/echo"))
            self.assertEqual((body["method"], body["body"]), (method, ""))

    async def test_clientGoneStopsStream(self) -> None:
        """
        When the client hangs up mid-stream, the stream's timer is cancelled:
        no delayed call is left and nothing is logged as an error.
        """
        self.clock = RecordingClock()
        url = self.serve(Site(FakeBackend("llama", self.clock, CHUNK_DELAY, 100)))
        response = await self.http.post(
            url + "/v1/chat/completions", data=b'{"stream": true}', unbuffered=True
        )
        collector = EventCollector(stopAfter=3)
        response.deliverBody(collector)
        reason = await collector.finished
        self.assertNotIsInstance(reason, ResponseDone)
        self.assertEqual(len(collector.events), 3)
        await self.waitForClose(self.connections)
        self.assertLess(len(self.clock.calls), 10)
        self.assertEqual(self.clock.pending(CHUNK_DELAY), [])

    async def test_slowHeaders(self) -> None:
        """
        C{/slow-headers?delay=S} sends nothing, not even headers, for S seconds.
        """
        start = reactor.seconds()
        response = await self.request("GET", "/slow-headers?delay=0.2")
        self.assertGreaterEqual(reactor.seconds() - start, 0.15)
        self.assertEqual(await self.json(response), {"status": "ok", "delay": 0.2})

    async def test_slowHeadersClientGone(self) -> None:
        """
        A client that gives up on C{/slow-headers} leaves no delayed call.
        """
        d = self.http.get(self.url + "/slow-headers?delay=5")
        reactor.callLater(0.1, d.cancel)
        with self.assertRaises((ResponseNeverReceived, CancelledError)):
            await d
        await self.waitForClose(self.connections)
        self.assertEqual([d for d, _ in self.clock.calls if d == 5], [5])
        self.assertEqual(self.clock.pending(5), [])

    async def test_badQueryArgument(self) -> None:
        """
        A query argument that is not a non-negative number is a 400.
        """
        for path in (
            "/slow-headers?delay=soon",
            "/slow-headers?delay=-1",
            "/stream-bytes?size=1.5",
            "/stream-bytes?chunk=0",
            "/die-midstream?after=-2",
        ):
            await self.assertError(await self.request("GET", path), 400)

    async def test_streamBytes(self) -> None:
        """
        C{/stream-bytes?size=N&chunk=M} sends N bytes, with a Content-Length.
        """
        response = await self.request("GET", "/stream-bytes?size=300001&chunk=1000")
        self.assertEqual(response.length, 300001)
        body = await response.content()
        self.assertEqual(body, b"x" * 300001)

    async def test_streamBytesBackpressure(self) -> None:
        """
        C{/stream-bytes} produces only as fast as the client reads: while the
        client does not read, the response cannot finish (the body is larger
        than the kernel's socket buffers); once it reads, all of it arrives.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def finished() -> bool:
            return any("/stream-bytes" in str(e.get("uri")) for e in events)

        size = 64 * 1024 * 1024
        response = await self.request("GET", f"/stream-bytes?size={size}")
        counter = ByteCounter(pauseAtFirst=True)
        response.deliverBody(counter)
        await counter.firstData
        await deferLater(reactor, 0.3)
        self.assertFalse(finished())
        counter.transport.resumeProducing()
        reason = await counter.finished
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(counter.received, size)
        self.assertTrue(finished())

    async def test_dieMidstream(self) -> None:
        """
        C{/die-midstream?after=K} sends K chunks, then closes the connection
        without ending the body, so the client sees a failed response.
        """
        response = await self.request("GET", "/die-midstream?after=3")
        self.assertEqual(response.code, 200)
        collector = EventCollector()
        response.deliverBody(collector)
        reason = await collector.finished
        self.assertNotIsInstance(reason, ResponseDone)
        deltas = [e["choices"][0]["delta"]["content"] for e in collector.payloads()]
        self.assertEqual(deltas, ["Hello from llama:", " token 1", " token 2"])

    async def test_logsRequests(self) -> None:
        """
        Each finished request is logged as one line naming model, method,
        path and status.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        await (await self.request("GET", "/health?probe=1")).content()
        lines = [formatEvent(e) for e in events]
        self.assertIn("llama: GET /health?probe=1 -> 200 (16 bytes)", lines)


class OpenAIClientTests(LoopbackMixin, TestCase):
    """
    The official C{openai} client, run in a thread, accepts the fake backend's
    answers, streamed or not.
    """

    timeout = 10

    if openai is None:  # pragma: no cover
        skip = "the openai package is not installed"

    def setUp(self) -> None:
        self.url = self.serve(makeSite("llama", reactor, 0.01, CHUNKS))

    def create(self, **kw: Any) -> Any:
        """
        In a thread: create a chat completion, and read all of a stream.
        """
        client = openai.OpenAI(
            base_url=self.url + "/v1", api_key="x", max_retries=0, timeout=5
        )
        try:
            result = client.chat.completions.create(
                model="llama", messages=[{"role": "user", "content": "hi"}], **kw
            )
            return list(result) if kw.get("stream") else result
        finally:
            client.close()

    async def test_create(self) -> None:
        """
        A non-streamed chat completion.
        """
        completion = await deferToThread(self.create)
        self.assertEqual(completion.model, "llama")
        self.assertEqual(completion.choices[0].message.content, TEXT)
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        self.assertEqual(completion.usage.completion_tokens, CHUNKS)

    async def test_createStream(self) -> None:
        """
        A streamed chat completion.
        """
        chunks = await deferToThread(self.create, stream=True)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertEqual(text, TEXT)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        self.assertEqual({c.model for c in chunks}, {"llama"})


class ProcessEnded(ProcessProtocol):
    """
    Collect a child's output; fire L{ended} with why it ended (an exception).
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[BaseException] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        self.ended.callback(reason.value)


class ProgramTests(TestCase):
    """
    C{python -m llmux.testing.fakebackend}, as the demo's hooks run it.
    """

    timeout = 10

    def spawn(self, *args: str) -> ProcessEnded:
        """
        Start the program with C{args}; kill it on cleanup if still running.
        """
        child = ProcessEnded()
        argv = [sys.executable, "-m", "llmux.testing.fakebackend", *args]
        transport = reactor.spawnProcess(child, sys.executable, argv, subprocessEnv())

        def cleanup() -> Deferred[BaseException] | None:
            if child.ended.called:
                return None
            transport.signalProcess("KILL")
            return child.ended

        self.addCleanup(cleanup)
        return child

    async def test_serves(self) -> None:
        """
        The program logs where it listens, answers C{/health}, and exits 0
        on SIGTERM.
        """
        port = freePort()
        child = self.spawn("--port", str(port), "--model", "proc")
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))
        for _ in range(80):
            try:
                response = await http.get(f"http://127.0.0.1:{port}/health")
                break
            except ConnectionRefusedError:
                self.assertFalse(child.ended.called, child.err)
                await deferLater(reactor, 0.1)
        else:
            self.fail(f"no answer on port {port}: {child.out!r} {child.err!r}")
        self.assertEqual(json.loads(await response.content()), {"status": "ok"})
        child.transport.signalProcess("TERM")
        reason = await child.ended
        self.assertEqual(getattr(reason, "exitCode", None), 0, child.err)
        self.assertIn(
            b"fake backend for proc listening on 127.0.0.1:%d" % (port,), child.out
        )
        self.assertIn(b"proc: GET /health -> 200", child.out)

    async def test_portInUse(self) -> None:
        """
        If the port is taken, the program says so and exits 1.
        """
        busy = reactor.listenTCP(
            0, Site(FakeBackend("x", reactor)), interface="127.0.0.1"
        )
        self.addCleanup(busy.stopListening)
        child = self.spawn("--port", str(busy.getHost().port), "--model", "proc")
        reason = await child.ended
        self.assertEqual(getattr(reason, "exitCode", None), 1, child.err)
        self.assertIn(b"cannot listen", child.out)

    def test_badArguments(self) -> None:
        """
        Bad command-line arguments are usage errors (exit 2).
        """
        devnull = open(os.devnull, "w")
        self.addCleanup(devnull.close)
        self.patch(sys, "stderr", devnull)
        for argv in (
            ["--model", "m"],
            ["--port", "1"],
            ["--port", "70000", "--model", "m"],
            ["--port", "1", "--model", "m", "--chunk-delay", "-1"],
            ["--port", "1", "--model", "m", "--chunks", "x"],
            ["--port", "1", "--model", "m", "--backend", "tgi"],
            ["--port", "1", "--model", "m", "--ready-after", "-1"],
        ):
            with self.assertRaises(SystemExit) as raised:
                main(argv)
            self.assertEqual(raised.exception.code, 2)
