"""
Tests for L{llmux.web.proxy}: the streaming proxy leaf, end to end over
loopback, with a fake switcher and small backends written here.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    succeed,
)
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.internet.interfaces import IPushProducer, IReactorCore, IReactorTCP
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from llmux.config import Config, ModelConfig
from llmux.cost import CostTracker
from llmux.errors import (
    LlmuxError,
    ModelCannotFit,
    ModelNotFound,
    ModelNotReady,
    RequestTimedOut,
    SwitchFailed,
)
from llmux.interfaces import (
    HookResult,
    IBackendHealth,
    ISlot,
    ISwitcher,
    ModelState,
    ModelView,
)
from llmux.metrics import Metrics
from llmux.settings import Settings
from llmux.switcher import Active
from llmux.web.errors import backendErrorMessage, errorBody, statusForError
from llmux.web.proxy import ProxyResource
from llmux.web.resource import makeSite

from .test_switcher import CapturedEvents

reactor: Any = _reactor
assert IReactorTCP.providedBy(reactor) and IReactorCore.providedBy(reactor)


# --- the fake switcher -------------------------------------------------------


class Signal:
    """
    A list of L{Deferred}s to fire the next time something happens.
    """

    def __init__(self) -> None:
        self._waiters: list[Deferred[Any]] = []

    def wait(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self, value: object = None) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(value)


@implementer(ISlot)
@attrs.define(eq=False)
class FakeSlot:
    """
    A slot that counts its releases.
    """

    model: str
    releases: int = 0
    released: Deferred[None] = attrs.Factory(Deferred)

    def release(self) -> None:
        self.releases += 1
        if self.releases == 1:
            self.released.callback(None)


@implementer(ISwitcher)
class FakeSwitcher:
    """
    A switcher whose models are always awake, unless told otherwise.

    @ivar models: the models that are awake.
    @ivar configured: every model it shows (C{models} and asleep ones).
    @ivar calls: the model of every C{acquire}, in order.
    @ivar slots: every slot handed out.
    @ivar errors: the error C{acquire} fails with, by model.
    @ivar hold: whether C{acquire} keeps the request waiting (in C{held}).
    @ivar cancelled: the models whose waiting C{acquire} was cancelled.
    """

    state = Active("fake")
    lastError = None

    def __init__(self, models: set[str], configured: tuple[str, ...] = ()) -> None:
        self.models = models
        self.configured = configured or tuple(sorted(models))
        self.costs = CostTracker()
        self.calls: list[str] = []
        self.slots: list[FakeSlot] = []
        self.errors: dict[str, Exception] = {}
        self.hold = False
        self.held: list[Deferred[ISlot]] = []
        self.cancelled: list[str] = []
        self.acquiring = Signal()
        self.cancelling = Signal()

    def acquire(self, model: str) -> Deferred[ISlot]:
        self.calls.append(model)
        if model in self.errors:
            return fail(self.errors[model])
        if model not in self.models:
            return fail(ModelNotFound(model))
        if self.hold:

            def cancel(d: Deferred[ISlot]) -> None:
                self.cancelled.append(model)
                self.cancelling.fire(model)

            held: Deferred[ISlot] = Deferred(cancel)
            self.held.append(held)
            self.acquiring.fire(model)
            return held
        slot = FakeSlot(model)
        self.slots.append(slot)
        return succeed(slot)

    def status(self) -> dict[str, object]:
        return {"state": "active", "models": sorted(self.models)}

    def views(self) -> tuple[ModelView, ...]:
        return tuple(
            ModelView(
                name=name,
                state=ModelState.AWAKE if name in self.models else ModelState.ASLEEP,
                placement=0 if name in self.models else None,
                holds={},
                pinned=False,
                inFlight=0,
                queueDepth=0,
                oldestWaitSecs=None,
                awakeSince=0.0 if name in self.models else None,
                idleExpiresInSecs=None,
            )
            for name in self.configured
        )

    def pools(self) -> tuple[()]:
        return ()

    def blockers(self, model: str) -> tuple[()]:
        return ()

    # Its models are awake from the start and never sleep: nothing to start,
    # stop, adopt or wake.

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def preload(self) -> Deferred[None]:
        return succeed(None)

    def shutdown(self, timeoutSecs: float, sleepAwake: bool) -> Deferred[None]:
        return succeed(None)

    def exclusively(self, work: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(work())

    def runHook(self, model: str, hook: str) -> Deferred[HookResult]:
        return succeed(HookResult(model, hook, 0, None, False, 0.0))

    def adopt(self, model: str) -> bool:
        return model in self.models

    def markDead(self, model: str, reason: str) -> Deferred[None]:
        return succeed(None)

    def sleepModel(self, model: str) -> Deferred[ModelState]:
        self.models.discard(model)
        return succeed(ModelState.ASLEEP)

    def unloadModel(self, model: str) -> Deferred[ModelState]:
        self.models.discard(model)
        return succeed(ModelState.UNLOADED)

    def pin(self, model: str, pinned: bool) -> None:
        pass

    def reconfigure(
        self, config: object, policy: object, eviction: object
    ) -> Deferred[dict[str, list[str]]]:
        return succeed({})


# --- backends ---------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


class Backend(Resource):
    """
    A backend with a few behaviours, chosen by the first path segment:
    C{/stream}, C{/die}, C{/hang}, C{/drop-once} (the first such request
    loses its connection before any answer); anything else echoes the
    request.

    @ivar disconnects: fires with each request whose client went away.
    @ivar hanging: fires when a C{/hang} request arrives.
    """

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.disconnects = Signal()
        self.hanging = Signal()
        self.streamed: list[int] = []
        self.dropped = 0

    def render(self, request: Request) -> bytes | int:
        if request.path.startswith(b"/drop-once") and not self.dropped:
            self.dropped += 1
            assert request.transport is not None
            request.transport.abortConnection()
            return NOT_DONE_YET
        if request.path.startswith(b"/stream"):
            return self.renderStream(request)
        if request.path.startswith(b"/die"):
            return self.renderDie(request)
        if request.path.startswith(b"/hang"):
            request.notifyFinish().addErrback(lambda f: self.disconnects.fire(request))
            self.hanging.fire(request)
            return NOT_DONE_YET
        return self.renderEcho(request)

    def renderEcho(self, request: Request) -> bytes:
        """
        Describe the request as JSON, with a status and headers of note.
        """
        assert request.content is not None
        echo = {
            "backend": self.name,
            "method": _text(request.method),
            "uri": _text(request.uri),
            "headers": {
                _text(name): [_text(v) for v in values]
                for name, values in request.requestHeaders.getAllRawHeaders()
            },
            "body": _text(request.content.read()),
        }
        request.setResponseCode(201, b"Echoed Here")
        request.setHeader(b"Content-Type", b"application/x-echo+json")
        request.responseHeaders.setRawHeaders(b"X-Multi", [b"one", b"two"])
        request.setHeader(b"Server", b"echo-backend")
        return json.dumps(echo).encode()

    def renderStream(self, request: Request) -> int:
        """
        Server-Sent Events: C{count} tokens, one every C{delay} seconds.
        """
        count = int(request.args.get(b"count", [b"5"])[0])
        delay = float(request.args.get(b"delay", [b"0.1"])[0])
        request.setHeader(b"Content-Type", b"text/event-stream")
        state: dict[str, Any] = {"call": None}

        def tick(n: int) -> None:
            if n == count:
                request.write(b"data: [DONE]\n\n")
                request.finish()
                return
            request.write(b"data: token %d\n\n" % (n,))
            self.streamed.append(n)
            state["call"] = reactor.callLater(delay, tick, n + 1)

        def gone(failure: Failure) -> None:
            if state["call"] is not None and state["call"].active():
                state["call"].cancel()
            self.disconnects.fire(request)

        request.notifyFinish().addErrback(gone)
        request.write(b"")
        state["call"] = reactor.callLater(delay, tick, 0)
        return NOT_DONE_YET

    def renderDie(self, request: Request) -> int:
        """
        Start a chunked body, then drop the connection.
        """
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.write(b"data: token 0\n\n")
        request.write(b"data: token 1\n\n")
        assert request.transport is not None
        request.transport.loseConnection()
        return NOT_DONE_YET


# --- connection bookkeeping -------------------------------------------------


class TrackingFactory(WrappingFactory):
    """
    Keeps track of a server's connections, so a test can wait until they
    are all gone and leave the reactor clean.
    """

    def __init__(self, factory: Site) -> None:
        super().__init__(factory)
        self._idle = Signal()

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            self._idle.fire()

    def closeAll(self) -> Deferred[Any]:
        if not self.protocols:
            return succeed(None)
        d = self._idle.wait()
        for p in list(self.protocols):
            p.transport.abortConnection()
        return d


class Collector(Protocol):
    """
    Collects a response body chunk by chunk, with arrival times.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        self.arrived = Signal()
        self.ended: Deferred[BaseException] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.times.append(reactor.seconds())
        self.arrived.fire(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Fired with the exception: a Deferred fired with a Failure errbacks.
        assert reason.value is not None
        self.ended.callback(reason.value)


# --- the tests --------------------------------------------------------------


def portOf(listening: Any) -> int:
    """
    The TCP port a listening port is bound to.
    """
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


class ProxyTestCase(TestCase):
    """
    Two backends (C{alpha}, C{beta}), a configured model with nothing
    listening (C{ghost}), a L{FakeSwitcher}, llmux's proxy on a loopback
    port, and a client that does not keep connections.
    """

    timeout = 10

    def setUp(self) -> None:
        self.backends = {name: Backend(name) for name in ("alpha", "beta")}
        ports = {name: self.listen(Site(b)) for name, b in self.backends.items()}
        ghost = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        ports["ghost"] = portOf(ghost)
        ghost.stopListening()
        self.config = Config(
            models=tuple(
                ModelConfig(
                    name=name, port=port, wake="true", sleep="true", alive="true"
                )
                for name, port in ports.items()
            )
        )
        self.switcher = FakeSwitcher(set(ports))
        self.addCleanup(self.checkSlots)

        backendPool = HTTPConnectionPool(reactor, persistent=True)
        backendPool.maxPersistentPerHost = 4
        self.addCleanup(backendPool.closeCachedConnections)
        self.metrics = Metrics()
        proxy = ProxyResource(
            self.switcher,
            Settings(self.config),
            Agent(reactor, pool=backendPool),
            self.metrics,
            health=self.health(),
        )
        self.port = self.listen(makeSite(proxy))

        self.clientPool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.clientPool)
        self.http = HTTPClient(self.agent)

    def health(self) -> IBackendHealth | None:
        """
        What the proxy tells of failing backends: nobody, here.
        """
        return None

    def listen(self, site: Site, port: int = 0) -> int:
        """
        Serve C{site} on a loopback port (by default, any) until the test
        ends; its port.
        """
        tracker = TrackingFactory(site)
        port = reactor.listenTCP(port, tracker, interface="127.0.0.1")
        self.addCleanup(tracker.closeAll)
        self.addCleanup(port.stopListening)
        return portOf(port)

    def checkSlots(self) -> None:
        """
        Every slot handed out was released, once.
        """
        self.assertEqual(
            [s.releases for s in self.switcher.slots], [1] * len(self.switcher.slots)
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str, model: str | None, **kwargs: Any) -> Deferred[Any]:
        """
        POST a JSON body naming C{model} through the proxy with treq.
        """
        body = {"model": model, "prompt": "hi"} if model is not None else {"x": 1}
        return self.http.post(
            self.url(path),
            data=json.dumps(body).encode(),
            headers=Headers({b"Content-Type": [b"application/json"]}),
            unbuffered=True,
            **kwargs,
        )

    async def errorOf(self, response: IResponse) -> tuple[int, bytes, list[bytes]]:
        """
        The status, body and content types of a response.
        """
        body = await treq.content(response)
        contentTypes = response.headers.getRawHeaders(b"content-type", [])
        return response.code, body, list(contentTypes)


class PassthroughTests(ProxyTestCase):
    """
    The request reaches the right backend unchanged, and the response comes
    back unchanged, minus what belongs to a single connection.
    """

    def test_switcherProvidesInterface(self) -> None:
        """
        The fake switcher and its slots provide the interfaces the proxy uses.
        """
        verifyObject(ISwitcher, self.switcher)
        verifyObject(ISlot, FakeSlot("alpha"))

    async def test_routesToModelPort(self) -> None:
        """
        A request for a model goes to that model's backend, after the
        switcher gave a slot on it.
        """
        for model in ("beta", "alpha"):
            response = await self.post("/v1/completions", model)
            echo = json.loads(await treq.content(response))
            self.assertEqual(echo["backend"], model)
        self.assertEqual(self.switcher.calls, ["beta", "alpha"])

    async def test_requestPassthrough(self) -> None:
        """
        Method, path, query, body and headers reach the backend as sent,
        except C{Host}, C{Content-Length}, C{Accept-Encoding}, C{Expect}, the
        hop-by-hop headers and the headers C{Connection} names, which are
        dropped (the backend sees the agent's own).
        """
        body = b'{"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}'
        headers = Headers(
            {
                b"Content-Type": [b"application/json"],
                b"Authorization": [b"Bearer sk-test"],
                b"X-Custom": [b"a", b"b"],
                b"Connection": [b"X-Drop-Me, Keep-Alive"],
                b"X-Drop-Me": [b"secret"],
                b"Keep-Alive": [b"timeout=5"],
                b"TE": [b"trailers"],
                b"Trailer": [b"X-Checksum"],
                b"Proxy-Authorization": [b"Basic Zm9vOmJhcg=="],
                b"Proxy-Connection": [b"keep-alive"],
                b"Accept-Encoding": [b"br"],
                b"Expect": [b"100-continue"],
                b"User-Agent": [b"llmux-test/1"],
            }
        )
        uri = "/v1/chat/completions?stream=false&x=%20y&z"
        response = await self.http.request(
            "PUT", self.url(uri), headers=headers, data=body, unbuffered=True
        )
        echo = json.loads(await treq.content(response))
        self.assertEqual(echo["method"], "PUT")
        self.assertEqual(echo["uri"], uri)
        self.assertEqual(echo["body"], body.decode())
        port = self.config.model("alpha").port  # type: ignore[union-attr]
        self.assertEqual(
            echo["headers"],
            {
                "Content-Type": ["application/json"],
                "Authorization": ["Bearer sk-test"],
                "X-Custom": ["a", "b"],
                "User-Agent": ["llmux-test/1"],
                "Host": [f"127.0.0.1:{port}"],
                "Content-Length": [str(len(body))],
                "Accept-Encoding": ["gzip"],
            },
        )

    async def test_multipartModel(self) -> None:
        """
        A multipart form (audio transcription) is routed on its C{model}
        field and forwarded byte for byte.
        """
        body = (
            b"--xyz\r\n"
            b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"\r\nRIFF\r\n"
            b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nbeta\r\n'
            b"--xyz--\r\n"
        )
        response = await self.http.post(
            self.url("/v1/audio/transcriptions"),
            data=body,
            headers=Headers({b"Content-Type": [b"multipart/form-data; boundary=xyz"]}),
        )
        echo = json.loads(await treq.content(response))
        self.assertEqual((echo["backend"], echo["body"]), ("beta", _text(body)))

    async def test_responsePassthrough(self) -> None:
        """
        The backend's status, phrase, headers and body come back as they
        were; no empty C{Content-Encoding} appears, and C{Content-Length} is
        the backend's.
        """
        body = json.dumps({"model": "alpha"}).encode()
        response = await self.agent.request(
            b"POST",
            self.url("/v1/x").encode(),
            Headers({b"Content-Type": [b"application/json"]}),
            FileBodyProducer(BytesIO(body)),
        )
        content = await treq.content(response)
        self.assertEqual((response.code, response.phrase), (201, b"Echoed Here"))
        h = response.headers
        self.assertEqual(h.getRawHeaders(b"content-type"), [b"application/x-echo+json"])
        self.assertEqual(h.getRawHeaders(b"x-multi"), [b"one", b"two"])
        self.assertEqual(h.getRawHeaders(b"server"), [b"echo-backend"])
        self.assertIsNone(h.getRawHeaders(b"content-encoding"))
        self.assertEqual(response.length, len(content))
        self.assertEqual(json.loads(content)["backend"], "alpha")

    async def test_slotReleasedAfterResponse(self) -> None:
        """
        The slot is released once the whole response was sent.
        """
        response = await self.post("/v1/completions", "alpha")
        await treq.content(response)
        [slot] = self.switcher.slots
        await slot.released
        self.assertEqual(slot.releases, 1)

    async def test_head(self) -> None:
        """
        A HEAD request is proxied as one, with the backend's headers.
        """
        response = await self.http.request(
            "HEAD",
            self.url("/v1/x"),
            data=b'{"model": "beta"}',
        )
        self.assertEqual(response.code, 201)
        self.assertEqual(await treq.content(response), b"")
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"),
            [b"application/x-echo+json"],
        )
        [length] = response.headers.getRawHeaders(b"content-length", [b"0"])
        self.assertGreater(int(length), 0)


class StreamingTests(ProxyTestCase):
    """
    Response bodies are relayed as they arrive, and however a stream ends,
    the slot is released once and the truncation (if any) is visible.
    """

    async def test_chunksArriveSpreadOut(self) -> None:
        """
        Server-Sent Events reach the client token by token, not all at the
        end.
        """
        response = await self.post("/stream?count=5&delay=0.1", "alpha")
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"]
        )
        collector = Collector()
        response.deliverBody(collector)
        reason = await collector.ended
        self.assertIsInstance(reason, ResponseDone)
        expected = b"".join(b"data: token %d\n\n" % (n,) for n in range(5))
        self.assertEqual(b"".join(collector.chunks), expected + b"data: [DONE]\n\n")
        self.assertGreaterEqual(len(collector.chunks), 4)
        self.assertGreater(collector.times[-1] - collector.times[0], 0.3)
        [slot] = self.switcher.slots
        await slot.released

    async def test_backendDiesMidStream(self) -> None:
        """
        A backend that dies mid-body makes the client's response fail, not
        end cleanly, and the slot is released.
        """
        response = await self.post("/die", "beta")
        self.assertEqual(response.code, 200)
        collector = Collector()
        response.deliverBody(collector)
        reason = await collector.ended
        self.assertIsInstance(reason, ResponseFailed)
        self.assertEqual(
            b"".join(collector.chunks), b"data: token 0\n\ndata: token 1\n\n"
        )
        [slot] = self.switcher.slots
        await slot.released

    async def test_backendDiesMidStreamCollect(self) -> None:
        """
        C{treq.collect} on a response whose backend died fails with
        L{ResponseFailed}.
        """
        response = await self.post("/die", "beta")
        await self.assertFailure(
            treq.collect(response, lambda data: None), ResponseFailed
        )

    async def test_clientGoneMidStream(self) -> None:
        """
        A client that hangs up mid-stream gets its slot released and its
        backend connection closed, so the backend stops producing.
        """
        backend = self.backends["alpha"]
        disconnected = backend.disconnects.wait()
        response = await self.post("/stream?count=100&delay=0.05", "alpha")
        collector = Collector()
        firstChunk = collector.arrived.wait()
        response.deliverBody(collector)
        await firstChunk
        IPushProducer(collector.transport).stopProducing()
        await collector.ended
        await disconnected
        [slot] = self.switcher.slots
        await slot.released
        produced = len(backend.streamed)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(backend.streamed), produced)
        self.assertLess(produced, 100)

    async def test_clientGoneWaitingForHeaders(self) -> None:
        """
        A client that hangs up while the backend has not answered yet gets
        its slot released and the backend request cancelled.
        """
        backend = self.backends["beta"]
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        requesting = self.post("/hang", "beta")
        await arrived
        requesting.cancel()
        await self.assertFailure(requesting, ResponseNeverReceived, CancelledError)
        await disconnected
        [slot] = self.switcher.slots
        await slot.released

    async def test_clientGoneWaitingForModel(self) -> None:
        """
        A client that hangs up while its model is not ready yet has its
        wait for the switcher cancelled.
        """
        self.switcher.hold = True
        acquiring = self.switcher.acquiring.wait()
        cancelling = self.switcher.cancelling.wait()
        requesting = self.post("/v1/completions", "alpha")
        self.assertEqual(await acquiring, "alpha")
        requesting.cancel()
        await self.assertFailure(requesting, ResponseNeverReceived, CancelledError)
        self.assertEqual(await cancelling, "alpha")
        self.assertEqual(self.switcher.cancelled, ["alpha"])

    async def test_slotArrivesLater(self) -> None:
        """
        A request that waited for its model is forwarded once the switcher
        hands out the slot.
        """
        self.switcher.hold = True
        acquiring = self.switcher.acquiring.wait()
        requesting = self.post("/v1/completions", "beta")
        await acquiring
        slot = FakeSlot("beta")
        self.switcher.slots.append(slot)
        self.switcher.held[0].callback(slot)
        response = await requesting
        self.assertEqual(json.loads(await treq.content(response))["backend"], "beta")
        await slot.released


class ErrorTests(ProxyTestCase):
    """
    Everything llmux answers itself is a JSON error with the right status.
    """

    async def assertError(
        self, requesting: Deferred[Any], status: int, message: str
    ) -> None:
        response = await requesting
        code, body, contentTypes = await self.errorOf(response)
        self.assertEqual(contentTypes, [b"application/json"])
        self.assertEqual(
            json.loads(body), {"error": {"message": message, "type": "llmux_error"}}
        )
        self.assertEqual(code, status)

    async def test_noModel(self) -> None:
        """
        A body that names no model gets a 404, without asking the switcher.
        """
        response = await self.post("/v1/completions", None)
        code, body, contentTypes = await self.errorOf(response)
        self.assertEqual(code, 404)
        self.assertEqual(contentTypes, [b"application/json"])
        self.assertEqual(
            body,
            b'{"error": {"message": "No model specified in request",'
            b' "type": "llmux_error"}}',
        )
        self.assertEqual(self.switcher.calls, [])

    async def test_noBody(self) -> None:
        """
        A GET without a body names no model: 404.
        """
        response = await self.http.get(self.url("/v1/whatever"))
        code, body, _ = await self.errorOf(response)
        self.assertEqual(code, 404)

    async def test_modelNotFound(self) -> None:
        """
        A model the switcher does not know: 404.
        """
        await self.assertError(self.post("/v1/x", "x"), 404, "Model not found: x")

    async def test_timedOut(self) -> None:
        """
        The switcher gave up waiting for the model: 504.
        """
        self.switcher.errors["alpha"] = RequestTimedOut("alpha", 1.0)
        await self.assertError(
            self.post("/v1/x", "alpha"), 504, "Request timed out waiting for model"
        )

    async def test_switchFailed(self) -> None:
        """
        The wake hook failed: 500.
        """
        self.switcher.errors["alpha"] = SwitchFailed("alpha", "exit code 3")
        await self.assertError(
            self.post("/v1/x", "alpha"), 500, "Hook failed for alpha: exit code 3"
        )

    async def test_notReady(self) -> None:
        """
        The model cannot take requests now: 503, with a Retry-After, as
        every 503.
        """
        self.switcher.errors["alpha"] = ModelNotReady("alpha", "shutting down")
        response = await self.post("/v1/x", "alpha")
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"5"])
        await self.assertError(
            succeed(response), 503, "Model not ready: alpha (shutting down)"
        )

    async def test_cannotFit(self) -> None:
        """
        A model kept out by pinned models: 503 with Retry-After, in whole
        seconds rounded up.
        """
        self.switcher.errors["alpha"] = ModelCannotFit("alpha", ("embed",), 42.5)
        response = await self.post("/v1/x", "alpha")
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"43"])
        await self.assertError(
            succeed(response),
            503,
            "Model alpha cannot fit: capacity held by pinned models embed",
        )

    async def test_backendRefused(self) -> None:
        """
        A backend that refuses the connection: 502, and the slot is released.
        """
        events = CapturedEvents(self)
        response = await self.post("/v1/x", "ghost")
        code, body, contentTypes = await self.errorOf(response)
        self.assertEqual((code, contentTypes), (502, [b"application/json"]))
        message = json.loads(body)["error"]["message"]
        self.assertTrue(message.startswith("Backend error: "), message)
        self.assertIn("refused", message)
        [failed] = events.named("backend_failed")
        self.assertEqual(failed["model"], "ghost")
        self.assertEqual("Backend error: " + failed["reason"], message)
        [slot] = self.switcher.slots
        await slot.released

    async def test_switcherBug(self) -> None:
        """
        A switcher that fails with something other than an llmux error gets
        a JSON 500, and the failure is logged.
        """
        self.switcher.errors["alpha"] = ZeroDivisionError("oops")
        await self.assertError(self.post("/v1/x", "alpha"), 500, "Internal error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_switcherRaises(self) -> None:
        """
        A switcher that raises from C{acquire} gets a JSON 500 too: nothing
        reaches twisted.web's HTML error page.
        """

        def broken(model: str) -> Deferred[ISlot]:
            raise ZeroDivisionError("oops")

        self.switcher.acquire = broken  # type: ignore[method-assign]
        await self.assertError(self.post("/v1/x", "alpha"), 500, "Internal error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_concurrentRequests(self) -> None:
        """
        Many requests at once each get their answer and release their slot.
        """
        results = await DeferredList(
            [self.post("/v1/x", ("alpha", "beta")[n % 2]) for n in range(20)],
            consumeErrors=True,
        )
        for ok, response in results:
            self.assertTrue(ok)
            await treq.content(response)
        self.assertEqual(len(self.switcher.slots), 20)
        for slot in self.switcher.slots:
            await slot.released


@implementer(IBackendHealth)
class FakeHealth:
    """
    Records the models suspected; each check's answer is given by the test.
    """

    def __init__(self) -> None:
        self.suspected: list[str] = []
        self.checks: list[Deferred[bool]] = []
        self.asked = Signal()
        self.cancelled = Signal()

    def suspect(self, model: str) -> Deferred[bool]:
        self.suspected.append(model)
        check: Deferred[bool] = Deferred(lambda d: self.cancelled.fire(model))
        self.checks.append(check)
        self.asked.fire(model)
        return check


class PassiveHealthTests(ProxyTestCase):
    """
    A backend that refuses or drops a connection before answering: the
    model is checked before the request is answered or sent again, once.
    """

    def health(self) -> IBackendHealth:
        self.fakeHealth = FakeHealth()
        return self.fakeHealth

    async def test_refusedRetried(self) -> None:
        """
        A refused request is sent again once the check is over, whatever it
        found (the backend never saw it), and the client sees only the
        answer of the second try.
        """
        events = CapturedEvents(self)
        asked = self.fakeHealth.asked.wait()
        responding = self.post("/v1/x", "ghost")
        await asked
        self.assertEqual(self.fakeHealth.suspected, ["ghost"])
        # The model was woken again meanwhile, on the same port.
        ghostPort = self.config.models[2].port
        self.listen(Site(Backend("ghost")), ghostPort)
        self.fakeHealth.checks[0].callback(True)
        response = await responding
        self.assertEqual(response.code, 201)
        self.assertEqual(json.loads(await treq.content(response))["backend"], "ghost")
        self.assertEqual(self.switcher.calls, ["ghost", "ghost"])
        self.assertEqual(len(events.named("request_retried")), 1)

    async def test_refusedTwice(self) -> None:
        """
        A request is sent again only once: refused again, it is a 502.
        """
        asked = self.fakeHealth.asked.wait()
        responding = self.post("/v1/x", "ghost")
        await asked
        self.fakeHealth.checks[0].callback(False)
        code, body, _ = await self.errorOf(await responding)
        self.assertEqual(code, 502)
        self.assertIn("refused", json.loads(body)["error"]["message"])
        self.assertEqual(self.fakeHealth.suspected, ["ghost"])
        self.assertEqual(self.switcher.calls, ["ghost", "ghost"])

    async def test_droppedAlive(self) -> None:
        """
        A request whose connection was dropped may have reached the backend:
        if the model is still alive, it is not sent again but answered 502.
        """
        asked = self.fakeHealth.asked.wait()
        responding = self.post("/drop-once", "alpha")
        await asked
        self.fakeHealth.checks[0].callback(True)
        code, _, _ = await self.errorOf(await responding)
        self.assertEqual(code, 502)
        self.assertEqual(self.switcher.calls, ["alpha"])

    async def test_droppedDead(self) -> None:
        """
        If the model was found dead, a dropped request is sent again (the
        dead backend served nothing), and served.
        """
        asked = self.fakeHealth.asked.wait()
        responding = self.post("/drop-once", "alpha")
        await asked
        self.fakeHealth.checks[0].callback(False)
        response = await responding
        self.assertEqual(response.code, 201)
        await treq.content(response)
        self.assertEqual(self.switcher.calls, ["alpha", "alpha"])

    async def test_clientGoneDuringCheck(self) -> None:
        """
        A client that leaves while the model is checked: nothing is sent
        again, the slot was given back, and the check is left to finish.
        """
        asked = self.fakeHealth.asked.wait()
        responding = self.post("/v1/x", "ghost")
        await asked
        cancelled = self.fakeHealth.cancelled.wait()
        responding.cancel()
        await self.assertFailure(responding, ResponseNeverReceived, CancelledError)
        self.assertEqual(await cancelled, "ghost")
        self.assertEqual(self.switcher.calls, ["ghost"])
        [slot] = self.switcher.slots
        self.assertEqual(slot.releases, 1)


class ErrorHelperTests(SynchronousTestCase):
    """
    L{llmux.web.errors}: the error body, the status of each switcher error
    and the one-line description of a backend failure.
    """

    def test_errorBody(self) -> None:
        """
        The body is OpenAI's error shape with llmux's type.
        """
        self.assertEqual(
            errorBody('say "hi"'),
            b'{"error": {"message": "say \\"hi\\"", "type": "llmux_error"}}',
        )

    def test_statusForError(self) -> None:
        """
        Each switcher error has its status; anything else has none.
        """
        self.assertEqual(statusForError(ModelNotFound("m")), 404)
        self.assertEqual(statusForError(RequestTimedOut("m", 1)), 504)
        self.assertEqual(statusForError(SwitchFailed("m", "x")), 500)
        self.assertEqual(statusForError(ModelNotReady("m", "x")), 503)
        self.assertIsNone(statusForError(LlmuxError("x")))
        self.assertIsNone(statusForError(ValueError("x")))

    def test_backendErrorMessage(self) -> None:
        """
        The innermost reason of a wrapped agent failure is the message.
        """
        wrapped = Failure(ResponseNeverReceived([Failure(ConnectionLost("went away"))]))
        self.assertEqual(
            backendErrorMessage(wrapped),
            "Backend error: Connection to the other side was lost in a non-clean"
            " fashion: went away.",
        )
        self.assertEqual(
            backendErrorMessage(Failure(ConnectError())),
            "Backend error: An error occurred while connecting.",
        )
