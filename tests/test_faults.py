"""
End-to-end fault tests: the whole llmux service over loopback, with faults
injected for real (a client that closes its socket, a backend process killed
with SIGKILL, a backend that never answers, a client that stops reading, a
client that sends too much, too slowly or nonsense), each checking what the
user sees and the invariants: llmux keeps serving, answers every request
(no request is lost silently) and leaks no in-flight slot.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any, cast

import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IResponse
from zope.interface import implementer

from llmux.config import Config
from llmux.policies.fifo import FifoPolicy
from llmux.service import LlmuxService, makeLlmuxService
from llmux.switcher import Active
from llmux.testing.fakebackend import makeSite as makeBackendSite
from llmux.web.resource import LlmuxSite, makeSite
from tests.test_e2e import (
    DEMO_HOOKS,
    DemoBackends,
    Harness,
    StreamCollector,
    errorOf,
    llmuxError,
)
from tests.test_web_proxy import TrackingFactory, portOf, reactor

MiB = 1 << 20


# --- the harness ----------------------------------------------------------------


class FaultHarness(Harness):
    """
    L{Harness}, plus what fault tests need: backends whose connections and
    written bytes are tracked, raw client connections, and a site whose
    request limits come from the config.

    @ivar connections: llmux's client connections, tracked so each test
        ends with all of them closed.
    """

    connections: TrackingFactory

    def startConfig(self, config: Config) -> str:
        """
        Start llmux for C{config}, built by L{makeLlmuxService} but served by
        a site with the config's C{max_body_bytes} and C{body_timeout_secs}.
        """
        policy = FifoPolicy.fromConfig(config.policy)
        service = makeLlmuxService(config, policy, "tcp:0:interface=127.0.0.1", reactor)
        site = service.site
        assert isinstance(site, LlmuxSite)
        # Until service.py hands the config's limits to makeSite: the same
        # root, served by a site with those limits.
        limited = makeSite(
            site.resource,
            maxBodyBytes=config.max_body_bytes,
            bodyTimeoutSecs=config.body_timeout_secs,
            metrics=site.metrics,
            clock=reactor,
        )
        self.connections = TrackingFactory(limited)
        service.site = self.connections  # type: ignore[assignment]
        self.service = service
        service.startService()
        self.case.addCleanup(service.stopService)
        self.case.addCleanup(self.connections.closeAll)
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        """
        The port llmux listens on.
        """
        assert self.service is not None and self.service.port is not None
        return portOf(self.service.port)

    @property
    def running(self) -> LlmuxService:
        """
        The running service.
        """
        assert self.service is not None
        return self.service

    def trackedBackend(
        self, model: str, chunkDelay: float = 0.05, chunks: int = 8
    ) -> tuple[int, CountingFactory]:
        """
        Start an in-process fake backend for C{model} whose connections and
        written bytes are tracked; return its port and tracker.
        """
        factory = CountingFactory(makeBackendSite(model, reactor, chunkDelay, chunks))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.case.addCleanup(factory.closeAll)
        self.case.addCleanup(port.stopListening)
        return portOf(port), factory

    async def raw(self, data: bytes = b"") -> RawClient:
        """
        A raw TCP connection to llmux, having sent C{data}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        client = await connectProtocol(endpoint, RawClient())
        self.case.addCleanup(client.close)
        if data:
            client.send(data)
        return client

    def assertNoSlots(self) -> None:
        """
        No model holds an in-flight slot or has a request waiting.
        """
        switcher = self.running.switcher
        for model in switcher.queueDepths():
            self.case.assertEqual(switcher.inFlight(model), 0, model)
        self.case.assertEqual(set(switcher.queueDepths().values()), {0})


class CountingWrapper(ProtocolWrapper):
    """
    Counts the bytes a server protocol writes.
    """

    factory: CountingFactory

    def makeConnection(self, transport: ITransport) -> None:
        size = self.factory.sendBuffer
        if size is not None and ISystemHandle.providedBy(transport):
            handle = cast(socket.socket, ISystemHandle(transport).getHandle())
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        super().makeConnection(transport)

    def write(self, data: bytes) -> None:
        self.factory.written += len(data)
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        data = list(data)
        self.factory.written += sum(map(len, data))
        super().writeSequence(data)


class CountingFactory(TrackingFactory):
    """
    A L{TrackingFactory} that also counts the bytes its protocols write.

    @ivar written: bytes written so far, headers included.
    @ivar sendBuffer: the kernel send buffer of its connections, if set.
    """

    protocol = CountingWrapper
    written = 0
    sendBuffer: int | None = None


class RawClient(Protocol):
    """
    A client that writes whatever it is told and keeps whatever it gets.

    @ivar received: everything received so far.
    @ivar closed: fires with everything received, once the connection is
        closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(self.received)

    def close(self) -> Deferred[bytes]:
        """
        Close the connection (if still open); fires when it is closed.
        """
        if not self.closed.called:
            ITCPTransport(self.transport).abortConnection()
        return self.closed

    def send(self, data: bytes) -> None:
        """
        Send C{data}.
        """
        assert self.transport is not None
        self.transport.write(data)


def parseResponse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    The status, headers (lower-case names) and body of an HTTP response with
    a C{Content-Length}; the body is what arrived, up to that length.
    """
    head, _, rest = raw.partition(b"\r\n\r\n")
    statusLine, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return int(statusLine.split(b" ")[1]), headers, rest[:length]


def requestHead(headers: dict[str, str], path: str = "/v1/chat/completions") -> bytes:
    """
    The head of a POST request with C{headers}.
    """
    lines = [f"POST {path} HTTP/1.1", "Host: llmux"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chatBody(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


# --- 1. the client goes away --------------------------------------------------


class ClientGoneTests(TestCase):
    """
    A client that goes away is forgotten at once: its place in the queue,
    its switch (if nobody else wants it), its backend request, its slot.
    """

    timeout = 30

    async def test_goneWhileWaitingForWake(self) -> None:
        """
        A client that closes its connection while its model's wake hook
        runs leaves the queue at once; the wake already running completes
        and nothing else runs; a later request is served without a hook.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port, wake="sleep 1")})
        switcher = h.running.switcher
        requesting = Deferred.fromCoroutine(
            h.post(base + "/v1/chat/completions", chatBody("A"))
        )
        await h.until(lambda: switcher.queueDepths()["A"] == 1)
        await h.until(lambda: h.hooks() == ["wake A"])
        requesting.cancel()
        await self.assertFailure(requesting, ResponseNeverReceived, CancelledError)
        started = time.monotonic()
        await h.until(lambda: switcher.queueDepths()["A"] == 0, timeout=0.5)
        self.assertLess(time.monotonic() - started, 0.5)
        self.assertNotEqual(switcher.state, Active("A"), "the wake is still running")
        await h.until(lambda: switcher.state == Active("A"))
        self.assertEqual(h.hooks(), ["wake A"])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(h.hooks(), ["wake A"])
        h.assertNoSlots()

    async def test_goneWhileWaitingForDrain(self) -> None:
        """
        The only client waiting for B goes away while A drains: the switch
        to B is called off, A is neither put to sleep nor replaced, and it
        keeps serving.
        """
        h = FaultHarness(self)
        portA, _ = h.trackedBackend("A", chunkDelay=0.1, chunks=100)
        portB, _ = h.trackedBackend("B")
        base = h.start({"A": h.recordingModel(portA), "B": h.recordingModel(portB)})
        switcher = h.running.switcher
        stream = await h.post(base + "/v1/chat/completions", chatBody("A", stream=True))
        collector = StreamCollector()
        stream.deliverBody(collector)
        await h.until(lambda: len(collector.chunks) >= 1)
        waiting = Deferred.fromCoroutine(
            h.post(base + "/v1/chat/completions", chatBody("B"))
        )
        await h.until(lambda: switcher.isDraining("A"))
        self.assertEqual(switcher.queueDepths()["B"], 1)
        waiting.cancel()
        await self.assertFailure(waiting, ResponseNeverReceived, CancelledError)
        await h.until(lambda: switcher.queueDepths()["B"] == 0, timeout=0.5)
        # A's stream ends (its client goes too), so the drain completes.
        IPushProducer(collector.transport).stopProducing()
        await collector.done
        await h.until(lambda: not switcher.isDraining("A"))
        self.assertEqual(switcher.state, Active("A"))
        self.assertEqual(h.hooks(), ["wake A"])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()

    async def test_goneMidStream(self) -> None:
        """
        A client that closes its connection mid-stream stops the backend
        from generating (its request is cancelled) and gives its slot back,
        once.
        """
        events: list[LogEvent] = []
        observer = _collectFrom("llmux.testing.fakebackend", events)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        h = FaultHarness(self)
        port, backend = h.trackedBackend("A", chunkDelay=0.05, chunks=200)
        base = h.start({"A": h.recordingModel(port)})
        stream = await h.post(base + "/v1/chat/completions", chatBody("A", stream=True))
        collector = StreamCollector()
        stream.deliverBody(collector)
        await h.until(lambda: len(collector.chunks) >= 3)
        self.assertEqual(h.running.switcher.inFlight("A"), 1)
        IPushProducer(collector.transport).stopProducing()
        await collector.done
        await h.until(lambda: not backend.protocols)
        [gone] = [e for e in events if "sent" in e]
        self.assertLess(gone["sent"], gone["total"])
        h.assertNoSlots()
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()


def _collectFrom(namespace: str, events: list[LogEvent]) -> ILogObserver:
    """
    A log observer that keeps the events of C{namespace}.
    """

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == namespace:
            events.append(event)

    return observe


# --- 2. the backend fails -----------------------------------------------------


def slowStreamWake(port: int) -> str:
    """
    A wake hook like the demo's, but whose backend streams 400 chunks, one
    every 50 ms, so a test can kill it mid-stream. It shares the demo's pid
    file, so the demo's sleep hook stops it.
    """
    common = DEMO_HOOKS.child("common.sh").path
    return f"""set -eu
set -- {port}
. {common}
pid=$(recorded) || pid=
if [ -n "$pid" ] && healthy; then exit 0; fi
"$python" -m llmux.testing.fakebackend --port "$port" --model "$LLMUX_MODEL" \\
    --chunk-delay 0.05 --chunks 400 >>"$logfile" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
until healthy; do
    alive "$pid" || exit 1
    sleep 0.1
done
"""


class BackendFaultTests(TestCase):
    """
    A backend that dies, refuses or never answers: a clear answer for the
    client, and the slot back.
    """

    timeout = 60

    async def test_killedMidStream(self) -> None:
        """
        A backend process killed with SIGKILL mid-stream: the client's
        response ends without a clean end of body and the slot is released.
        The next request finds the backend refusing: the model is checked
        at once (passive health), found dead, woken again by its wake hook
        (which starts a new backend) and the request, sent again, is served
        within seconds, not after C{alive_interval_secs * alive_failures}.
        """
        h = FaultHarness(self)
        backends = DemoBackends(self, h)
        modelA = backends.model("A")
        modelA["wake"] = slowStreamWake(modelA["port"])
        portB, _ = h.trackedBackend("B")
        base = h.start({"A": modelA, "B": h.recordingModel(portB)})
        switcher = h.running.switcher
        stream = await h.post(base + "/v1/chat/completions", chatBody("A", stream=True))
        self.assertEqual(stream.code, 200)
        collector = StreamCollector()
        stream.deliverBody(collector)
        await h.until(lambda: len(collector.chunks) >= 3)
        os.kill(backends.pid("A"), signal.SIGKILL)
        await collector.done
        self.assertFalse(collector.complete)
        assert collector.reason is not None
        self.assertTrue(collector.reason.check(ResponseFailed), collector.reason)
        self.assertNotIn(b"[DONE]", collector.body)
        await h.until(lambda: switcher.inFlight("A") == 0)

        started = time.monotonic()
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertLess(time.monotonic() - started, 5.0)
        h.assertNoSlots()

        self.assertEqual((await h.chat(base, "B"))["model"], "B")
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(switcher.state, Active("A"))
        h.assertNoSlots()

    async def test_diesMidStream(self) -> None:
        """
        A backend that drops its connection mid-stream (in process, so
        fast): the same truncation at the client, the slot released.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)})
        response = await treq.request(
            "GET",
            base + "/die-midstream?after=3",
            data=json.dumps({"model": "A"}).encode(),
            pool=h.pool,
            unbuffered=True,
        )
        collector = StreamCollector()
        response.deliverBody(collector)
        await collector.done
        self.assertFalse(collector.complete)
        self.assertEqual(collector.body.count(b"data: "), 3)
        await h.until(lambda: h.running.switcher.inFlight("A") == 0)
        self.assertEqual((await h.chat(base, "A"))["model"], "A")

    async def test_noResponseHeaders(self) -> None:
        """
        A backend that sends nothing for 30 s, with an upstream timeout of
        0.5 s: a JSON 504 quickly, the backend connection closed, the slot
        released, and llmux goes on serving.
        """
        h = FaultHarness(self)
        port, backend = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)}, {"upstream_timeout_secs": 0.5})
        await h.chat(base, "A")
        started = time.monotonic()
        response = await treq.request(
            "GET",
            base + "/slow-headers?delay=30",
            data=json.dumps({"model": "A"}).encode(),
            pool=h.pool,
        )
        self.assertEqual(
            await errorOf(response),
            (
                504,
                b"application/json",
                llmuxError("Backend timed out: no response within 0.5s"),
            ),
        )
        self.assertLess(time.monotonic() - started, 5)
        h.assertNoSlots()
        # The backend saw its request go (and cancelled its 30 s timer).
        await h.until(lambda: not backend.protocols)
        self.assertEqual((await h.chat(base, "A"))["model"], "A")


# --- 3. backpressure ----------------------------------------------------------


def userBuffered(transport: Any) -> int:
    """
    The bytes a Twisted TCP transport holds in its own write buffer (not
    yet handed to the kernel).

    Test-only use of L{twisted.internet.abstract.FileDescriptor}'s private
    buffer attributes: no public API tells how much a transport buffers.
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class SlowReader(Protocol):
    """
    Reads a response body at the pace a test sets, noting after every read
    how far the backend is ahead of it and how much llmux buffers.

    @ivar received: body bytes received.
    @ivar ahead: the most the backend had written beyond C{received}, in
        each phase.
    @ivar buffered: the most llmux held in its own write buffers.
    @ivar phase: the current phase, a key of C{ahead}.
    @ivar burst: in the throttled phase, the bytes read between two rests.
    @ivar rest: how long each rest is, in seconds.
    """

    def __init__(self, backend: CountingFactory, llmux: TrackingFactory) -> None:
        self.backend = backend
        self.llmux = llmux
        self.received = 0
        self.phase = "start"
        self.ahead: dict[str, int] = {}
        self.buffered = 0
        self.done: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.burst = 0
        self.rest = 0.0
        self._sinceRest = 0

    def pause(self) -> None:
        IPushProducer(self.transport).pauseProducing()

    def resume(self) -> None:
        IPushProducer(self.transport).resumeProducing()

    def measure(self) -> None:
        gap = self.backend.written - self.received
        self.ahead[self.phase] = max(self.ahead.get(self.phase, 0), gap)
        held = sum(userBuffered(p.transport) for p in self.llmux.protocols)
        self.buffered = max(self.buffered, held)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self._sinceRest += len(data)
        self.measure()
        if self.burst and self._sinceRest >= self.burst:
            self._sinceRest = 0
            self.pause()
            reactor.callLater(self.rest, self.resume)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.done.callback(None)


class BackpressureTests(TestCase):
    """
    A client that reads slowly slows the backend down: llmux does not
    buffer the difference.
    """

    timeout = 120

    async def test_slowReader(self) -> None:
        """
        200 MB to a client that stops reading for a second, then reads in
        bursts with rests: the backend is never more than a few MB ahead of
        the client (socket buffers in the kernel: the test caps the fake
        backend's own at 256 KiB; llmux's are the system's), llmux itself
        never holds more than a few of its 64 KiB writes, and every byte
        arrives.

        Without backpressure the backend would write all 200 MB at once,
        into llmux's memory.
        """
        size = 200 * MiB
        h = FaultHarness(self)
        port, backend = h.trackedBackend("A")
        backend.sendBuffer = 256 * 1024
        base = h.start({"A": h.recordingModel(port)})
        await h.chat(base, "A")
        response: IResponse = await treq.request(
            "GET",
            base + f"/stream-bytes?size={size}&chunk=65536",
            data=json.dumps({"model": "A"}).encode(),
            pool=h.pool,
            unbuffered=True,
        )
        self.assertEqual(response.length, size)
        reader = SlowReader(backend, h.connections)
        response.deliverBody(reader)
        reader.pause()
        reader.phase = "paused"
        for _ in range(20):
            await deferLater(reactor, 0.05)
            reader.measure()
        self.assertLess(reader.received, MiB)
        reader.phase = "throttled"
        reader.burst, reader.rest = 4 * MiB, 0.005
        reader.resume()
        await reader.done
        assert reader.reason is not None
        self.assertTrue(reader.reason.check(ResponseDone), reader.reason)
        self.assertEqual(reader.received, size)
        self.assertLess(reader.ahead["paused"], 8 * MiB, reader.ahead)
        self.assertLess(reader.ahead["throttled"], 8 * MiB, reader.ahead)
        self.assertLess(reader.buffered, MiB)
        h.assertNoSlots()


# --- 6. limits and bad input --------------------------------------------------


class LimitTests(TestCase):
    """
    Requests that are too large, too slow or malformed get a clear JSON
    error; none runs a hook; llmux goes on serving.
    """

    timeout = 30

    async def assertRefused(self, client: RawClient, status: int, message: str) -> None:
        """
        C{client} got exactly a JSON error, and its connection was closed.
        """
        raw = await client.closed
        code, headers, body = parseResponse(raw)
        self.assertEqual(code, status)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(json.loads(body), llmuxError(message))
        self.assertEqual(len(raw), raw.index(b"\r\n\r\n") + 4 + len(body))

    async def test_contentLengthTooLarge(self) -> None:
        """
        A declared 100 MB body, of which a few KB are sent: 413 at once,
        without waiting for the rest; no hook runs.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)})
        head = requestHead(
            {"Content-Type": "application/json", "Content-Length": str(100 * MiB)}
        )
        client = await h.raw(head + b'{"model": "A", "pad": "' + b"x" * 4000)
        await self.assertRefused(
            client, 413, f"Request body too large: limit is {32 * MiB} bytes"
        )
        self.assertEqual(h.hooks(), [])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()

    async def test_chunkedTooLarge(self) -> None:
        """
        A chunked body that passes the limit: 413 although the body has not
        ended; no hook runs.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)}, {"max_body_bytes": MiB})
        client = await h.raw(
            requestHead(
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            )
        )
        piece = b"x" * 65536
        for _ in range(20):
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await self.assertRefused(
            client, 413, f"Request body too large: limit is {MiB} bytes"
        )
        self.assertEqual(h.hooks(), [])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()

    async def test_withinLimit(self) -> None:
        """
        A body just under the limit goes through.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)}, {"max_body_bytes": MiB})
        body = chatBody("A", pad="x" * (MiB - 200))
        self.assertLess(len(json.dumps(body)), MiB)
        self.assertEqual((await h.chat(base, "A", pad=body["pad"]))["model"], "A")

    async def test_slowBody(self) -> None:
        """
        Headers and a few body bytes, then nothing (slowloris): 408 after
        the body timeout; no hook runs.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)}, {"body_timeout_secs": 0.5})
        started = time.monotonic()
        client = await h.raw(
            requestHead({"Content-Type": "application/json", "Content-Length": "100"})
            + b'{"mod'
        )
        await self.assertRefused(client, 408, "Request body not received within 0.5s")
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(h.hooks(), [])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()

    async def test_slowHeaders(self) -> None:
        """
        A request head that never ends: 408 too.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        h.start({"A": h.recordingModel(port)}, {"body_timeout_secs": 0.5})
        client = await h.raw(b"POST /v1/completions HTTP/1.1\r\nHost: llmux\r\n")
        await self.assertRefused(client, 408, "Request body not received within 0.5s")

    async def test_badBodies(self) -> None:
        """
        Bodies that name no model (malformed JSON, not UTF-8, empty, a model
        that is not a string, absurd nesting) get a 404 "No model specified";
        model names full of shell syntax get a 404 "Model not found"; no
        hook runs, and no shell ran them.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)})
        url = base + "/v1/chat/completions"
        noModel = llmuxError("No model specified in request")
        for body in [
            b'{"model": "A", ',
            b'{"model": "\xff\xfeA"}',
            b"\xff\xfe\x00{",
            b"",
            b'{"model": 7}',
            b'{"model": null}',
            b'{"model": ["A"]}',
            b'["A"]',
            b"[" * 100_000,
        ]:
            response = await h.post(url, body)
            self.assertEqual(
                await errorOf(response), (404, b"application/json", noModel), body
            )
        for name in [
            "A; touch pwned",
            "$(touch pwned2)",
            "`touch pwned3`",
            "A\n touch pwned4",
            "../../A",
            "A' || touch pwned5 '",
        ]:
            response = await h.post(url, chatBody(name))
            self.assertEqual(
                await errorOf(response),
                (404, b"application/json", llmuxError(f"Model not found: {name}")),
            )
        self.assertEqual(h.hooks(), [])
        for directory in (".", h.directory.path):
            self.assertEqual(
                [p for p in os.listdir(directory) if p.startswith("pwned")], []
            )
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        h.assertNoSlots()

    async def test_hugeHeader(self) -> None:
        """
        A 100 KB header: a JSON 431 (not a traceback page, not a silently
        closed connection), then the connection is closed.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        base = h.start({"A": h.recordingModel(port)})
        client = await h.raw(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: llmux\r\n"
            b"X-Huge: " + b"a" * 100_000 + b"\r\n\r\n"
        )
        await self.assertRefused(
            client,
            431,
            "Request headers too large: limit is 16384 bytes and 500 headers",
        )
        self.assertEqual(h.hooks(), [])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")

    async def test_malformedHead(self) -> None:
        """
        A request head llmux cannot parse: a JSON 400.
        """
        h = FaultHarness(self)
        port, _ = h.trackedBackend("A")
        h.start({"A": h.recordingModel(port)})
        client = await h.raw(b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n")
        await self.assertRefused(client, 400, "Malformed request")
